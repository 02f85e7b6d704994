//! Tenant secrets as policy: what a secret's name may be, how much a
//! generation may hold, its keyed fingerprint, the manifest a staged
//! generation carries on the tenant's tmpfs, the size of its drive image,
//! and how plans show it. Pure: reading the operator's files is
//! `host/fs/input.rs`, staging them is the host's `Secrets`.
//!
//! A secret's value never leaves the tmpfs and the memory of the command
//! that stages it: plans, records and audit logs carry the generation, the
//! file names and sizes, and an HMAC-SHA256 under the node's key — never a
//! plain hash, which would let a low-entropy secret be guessed offline.

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// At most this many bytes of secrets in one generation: what Kubernetes
/// allows a Secret. The tenant's tmpfs (`TMPFS_SIZE`) holds the live
/// generation, a staged one and one being built, each as files and image.
pub const MAX_TOTAL_BYTES: u64 = 1 << 20;
/// The size of each tenant's secrets tmpfs (a limit: memory is used only
/// by what is stored).
pub const TMPFS_SIZE: &str = "16384k";
/// At most this many files in one generation.
pub const MAX_FILES: usize = 256;
/// The longest name a secret may have.
pub const MAX_NAME: usize = 64;

/// The manifest's format.
pub const MANIFEST_VERSION: u32 = 1;
/// A manifest larger than this is not one mvm wrote.
pub const MANIFEST_CAP: u64 = 64 << 10;
/// The ext4 label of a secrets image: how the guest finds its drive.
pub const LABEL: &str = "mvm-secrets";
/// The drive image of a generation, in its directory.
pub const IMAGE: &str = "secrets.img";
/// The manifest of a generation, in its directory.
pub const MANIFEST: &str = "manifest.json";
/// The files of a generation (the image's source), in its directory.
pub const FILES: &str = "files";
/// Where a generation is built before it is renamed into place: left over
/// only by a command that was killed, and removed by the next one.
pub const STAGING_PREFIX: &str = ".stage-";
/// What plans show for a VM without secrets.
pub const NONE: &str = "(sensitive) none";

/// The directory of generation `n` on the tenant's tmpfs.
pub fn generation_dir(n: u64) -> String {
    format!("gen-{n}")
}

/// The generation a directory name on the tmpfs holds, if it is one.
pub fn parse_generation_dir(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("gen-")?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Checks a secret's name: `[A-Za-z0-9._-]{1,64}`, not starting with `.`
/// (no hidden files, no `.` or `..`).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("a secret's name is 1 to {MAX_NAME} bytes long"));
    }
    if name.starts_with('.') {
        return Err("a secret's name must not start with \".\"".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{c:?} is not allowed in a secret's name (only A-Z a-z 0-9 . _ -)"
        ));
    }
    Ok(())
}

/// One secret: its name and value. The value is wiped when dropped.
pub struct SecretFile {
    pub name: String,
    pub value: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFile")
            .field("name", &self.name)
            .field("bytes", &self.value.len())
            .finish()
    }
}

/// Checks a generation as a whole: names valid and distinct, at least one
/// file, at most `MAX_FILES`, at most `MAX_TOTAL_BYTES` in all.
pub fn check_generation(files: &[SecretFile]) -> Result<(), String> {
    if files.is_empty() {
        return Err("no secret to stage: the input holds no file".into());
    }
    if files.len() > MAX_FILES {
        return Err(format!(
            "{} files; a generation holds at most {MAX_FILES}",
            files.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for f in files {
        check_name(&f.name).map_err(|e| format!("{:?}: {e}", f.name))?;
        if !seen.insert(f.name.as_str()) {
            return Err(format!("{:?} is given twice", f.name));
        }
    }
    let total = total_bytes(files);
    if total > MAX_TOTAL_BYTES {
        return Err(over_limit(total));
    }
    Ok(())
}

/// Says that `total` bytes are too many, with the limit.
pub fn over_limit(total: u64) -> String {
    format!(
        "{total} bytes of secrets; a generation holds at most {MAX_TOTAL_BYTES} bytes (1 MiB) — \
         the tenant's secrets tmpfs holds the live generation, a staged one and one being built"
    )
}

pub fn total_bytes(files: &[SecretFile]) -> u64 {
    files.iter().map(|f| f.value.len() as u64).sum()
}

/// The keyed fingerprint of a generation: HMAC-SHA256 under the node's
/// key over each file, sorted by name, as name length, name, value length,
/// value (so no two different sets of files encode alike).
pub fn fingerprint(key: &[u8], files: &[SecretFile]) -> String {
    let mut sorted: Vec<&SecretFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key");
    for f in sorted {
        mac.update(&(f.name.len() as u64).to_be_bytes());
        mac.update(f.name.as_bytes());
        mac.update(&(f.value.len() as u64).to_be_bytes());
        mac.update(&f.value);
    }
    let tag = mac.finalize().into_bytes();
    format!("hmac-sha256:{}", crate::digest::hex(&tag))
}

/// Whether `s` is a fingerprint as `fingerprint` spells it.
pub fn is_fingerprint(s: &str) -> bool {
    s.strip_prefix("hmac-sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The node key's length.
pub const KEY_BYTES: usize = 32;

/// One file of a generation, as its manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
}

/// What a staged generation is, kept beside it on the tmpfs (root-only):
/// no value, only names, sizes and the keyed fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub generation: u64,
    pub files: Vec<FileEntry>,
    pub fingerprint: String,
    pub staged_at: String,
}

impl Manifest {
    pub fn new(generation: u64, key: &[u8], files: &[SecretFile], staged_at: String) -> Self {
        let mut entries: Vec<FileEntry> = files
            .iter()
            .map(|f| FileEntry {
                name: f.name.clone(),
                bytes: f.value.len() as u64,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Manifest {
            format_version: MANIFEST_VERSION,
            generation,
            files: entries,
            fingerprint: fingerprint(key, files),
            staged_at,
        }
    }

    /// Reads a manifest of generation `generation`: one mvm wrote, or an
    /// error saying why not.
    pub fn parse(bytes: &[u8], generation: u64) -> Result<Self, String> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("not a manifest: {e}"))?;
        if m.format_version != MANIFEST_VERSION {
            return Err(format!(
                "format_version {}; this mvm reads {MANIFEST_VERSION}",
                m.format_version
            ));
        }
        if m.generation != generation {
            return Err(format!(
                "says generation {}, but is in the directory of {generation}",
                m.generation
            ));
        }
        if !is_fingerprint(&m.fingerprint) || m.files.iter().any(|f| check_name(&f.name).is_err()) {
            return Err("has a malformed fingerprint or file name".into());
        }
        Ok(m)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        crate::spec::json::file_text(self)
    }

    /// `(sensitive) generation 4, 2 files`: all a plan says of it.
    pub fn summary(&self) -> String {
        summary(self.generation, self.files.len())
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// How plans, status and records show a generation.
pub fn summary(generation: u64, files: usize) -> String {
    let s = if files == 1 { "" } else { "s" };
    format!("(sensitive) generation {generation}, {files} file{s}")
}

/// The generation a summary names (`None` for `NONE`), or an error when
/// it is not a summary.
pub fn parse_summary(s: &str) -> Result<Option<(u64, usize)>, String> {
    if s == NONE {
        return Ok(None);
    }
    let bad = || {
        format!(
            "{s:?} is not a secrets summary (\"{NONE}\" or \"(sensitive) generation N, M files\")"
        )
    };
    let rest = s.strip_prefix("(sensitive) generation ").ok_or_else(bad)?;
    let (g, n) = rest.split_once(", ").ok_or_else(bad)?;
    let n = n
        .strip_suffix(" files")
        .or_else(|| n.strip_suffix(" file"))
        .ok_or_else(bad)?;
    let (g, n): (u64, usize) = (g.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
    if summary(g, n) != s || g == 0 {
        return Err(bad());
    }
    Ok(Some((g, n)))
}

/// A summary as a planned attribute carries it: the generation and its
/// file count, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary(pub Option<(u64, usize)>);

impl Summary {
    pub fn generation(self) -> Option<u64> {
        self.0.map(|(g, _)| g)
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some((g, n)) => f.write_str(&summary(g, n)),
            None => f.write_str(NONE),
        }
    }
}

impl<'de> Deserialize<'de> for Summary {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_summary(&s)
            .map(Summary)
            .map_err(serde::de::Error::custom)
    }
}

/// The size of the drive image for these files: ext4 with 1 KiB blocks
/// and no journal, room for each file's blocks, its inode and directory
/// entry, and the filesystem's own metadata, with a margin. (mkfs.ext4 of
/// 256 files of 4 KiB needs 1,130 KiB; this gives 1,372 KiB.)
pub fn image_bytes(files: &[FileEntry]) -> u64 {
    let data: u64 = files.iter().map(|f| f.bytes.div_ceil(1024)).sum();
    let inodes = inode_count(files) * 256 / 1024;
    let dirents: u64 = files
        .iter()
        .map(|f| (8 + f.name.len() as u64).div_ceil(4) * 4)
        .sum::<u64>()
        .div_ceil(1024);
    let blocks = (data + inodes + dirents + 192) * 21 / 20;
    blocks.max(256) * 1024
}

/// How many inodes the image gets: one per file, and the filesystem's
/// reserved ones.
pub fn inode_count(files: &[FileEntry]) -> u64 {
    files.len() as u64 + 16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, value: &[u8]) -> SecretFile {
        SecretFile {
            name: name.into(),
            value: Zeroizing::new(value.to_vec()),
        }
    }

    #[test]
    fn names_are_plain_and_bounded() {
        for ok in ["db-password", "tls.crt", "A_b.9", &"x".repeat(64)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            ".",
            "..",
            "a/b",
            "a b",
            "näme",
            "x\n",
            &"x".repeat(65),
            "a+b",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_generation_is_bounded_and_distinct() {
        assert!(check_generation(&[]).is_err());
        assert!(check_generation(&[file("a", b"1"), file("a", b"2")]).is_err());
        let big = file("big", &vec![0; MAX_TOTAL_BYTES as usize + 1]);
        let e = check_generation(&[big]).unwrap_err();
        assert!(e.contains("1048576 bytes (1 MiB)"), "{e}");
        let many: Vec<SecretFile> = (0..=MAX_FILES)
            .map(|i| file(&format!("f{i}"), b""))
            .collect();
        assert!(check_generation(&many).is_err());
        assert!(check_generation(&[file("a", b"1"), file("b", b"")]).is_ok());
    }

    #[test]
    fn the_fingerprint_is_keyed_order_free_and_unambiguous() {
        let k1 = [1u8; KEY_BYTES];
        let k2 = [2u8; KEY_BYTES];
        let ab = [file("a", b"x"), file("b", b"y")];
        let ba = [file("b", b"y"), file("a", b"x")];
        let f = fingerprint(&k1, &ab);
        assert!(is_fingerprint(&f), "{f}");
        assert_eq!(f, fingerprint(&k1, &ba));
        assert_ne!(
            f,
            fingerprint(&k2, &ab),
            "another node's key gives another fingerprint"
        );
        // Not a plain hash of the value.
        assert!(!f.contains(&crate::digest::sha256(b"x")));
        // Moving a byte between name and value changes it.
        assert_ne!(
            fingerprint(&k1, &[file("ab", b"c")]),
            fingerprint(&k1, &[file("a", b"bc")])
        );
        assert_ne!(f, fingerprint(&k1, &[file("a", b"x"), file("b", b"z")]));
    }

    #[test]
    fn summaries_round_trip() {
        assert_eq!(summary(4, 2), "(sensitive) generation 4, 2 files");
        assert_eq!(summary(1, 1), "(sensitive) generation 1, 1 file");
        assert_eq!(
            parse_summary("(sensitive) generation 4, 2 files"),
            Ok(Some((4, 2)))
        );
        assert_eq!(parse_summary(NONE), Ok(None));
        for bad in [
            "generation 4",
            "(sensitive) generation 4, 1 files",
            "(sensitive) generation 0, 1 file",
            "(sensitive) generation 04, 2 files",
            "(sensitive) generation 4, 2 files ",
        ] {
            assert!(parse_summary(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generation_dirs_are_canonical() {
        assert_eq!(parse_generation_dir(&generation_dir(12)), Some(12));
        for bad in [
            "gen-", "gen-0", "gen-01", "gen-1a", "gen-+1", ".stage-3", "x",
        ] {
            assert_eq!(parse_generation_dir(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_manifest_is_checked_against_its_directory() {
        let m = Manifest::new(
            3,
            &[7; KEY_BYTES],
            &[file("b", b"12"), file("a", b"1")],
            "t".into(),
        );
        assert_eq!(m.files[0].name, "a");
        assert_eq!(m.total_bytes(), 3);
        let bytes = m.to_bytes();
        assert_eq!(Manifest::parse(&bytes, 3).unwrap(), m);
        assert!(Manifest::parse(&bytes, 4).is_err());
        assert!(!String::from_utf8(bytes).unwrap().contains("12\""));
    }

    #[test]
    fn the_image_has_room_for_a_full_generation() {
        let full: Vec<FileEntry> = (0..256)
            .map(|i| FileEntry {
                name: format!("f{i}"),
                bytes: 4096,
            })
            .collect();
        assert!(image_bytes(&full) >= 1130 * 1024);
        assert!(image_bytes(&full) < 2 << 20);
        assert_eq!(image_bytes(&[]), 256 * 1024);
    }
}
