//! Typed attribute values that need checking when a plan is decoded, so a
//! hand-edited plan cannot smuggle a mode or a mount option through.

use serde::{Deserialize, Deserializer};

/// A permission mode written as octal digits (`"0700"`), at most `0o7777`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if !(3..=4).contains(&s.len()) || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(serde::de::Error::custom(format!(
                "{s:?} is not an octal mode like \"0700\""
            )));
        }
        u32::from_str_radix(&s, 8)
            .map(FileMode)
            .map_err(serde::de::Error::custom)
    }
}

impl FileMode {
    /// As tmpfs and the plan write it: `0700`.
    pub fn octal(self) -> String {
        format!("{:04o}", self.0)
    }
}

/// A tmpfs size: digits with an optional `k`, `m` or `g` suffix, not zero
/// (tmpfs reads `size=0` as unlimited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsSize(pub String);

impl<'de> Deserialize<'de> for TmpfsSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let digits = s.strip_suffix(['k', 'm', 'g']).unwrap_or(&s);
        let ok = !digits.is_empty()
            && digits.len() <= 12
            && digits.bytes().all(|b| b.is_ascii_digit())
            && digits.bytes().any(|b| b != b'0');
        if !ok {
            return Err(serde::de::Error::custom(format!(
                "{s:?} is not a tmpfs size like \"16384k\" (digits, optional k/m/g, not zero)"
            )));
        }
        Ok(TmpfsSize(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_sizes_are_checked() {
        let m: FileMode = serde_json::from_str("\"0700\"").unwrap();
        assert_eq!((m.0, m.octal()), (0o700, "0700".to_string()));
        for bad in ["\"0800\"", "\"07000\"", "\"rwx\"", "700"] {
            assert!(serde_json::from_str::<FileMode>(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<TmpfsSize>("\"16384k\"").is_ok());
        for bad in ["\"0\"", "\"0k\"", "\"16384k,exec\"", "\"\"", "\"k\""] {
            assert!(serde_json::from_str::<TmpfsSize>(bad).is_err(), "{bad}");
        }
    }
}
