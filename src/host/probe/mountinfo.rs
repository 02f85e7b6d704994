//! Parsing `/proc/self/mountinfo` (proc(5)).

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub struct MountEntry {
    /// The mount id (what `statx` reports as `stx_mnt_id`).
    pub id: u64,
    pub mount_point: PathBuf,
    pub fstype: String,
    /// Per-mount options (`rw,nosuid,nodev`).
    pub options: Vec<String>,
    /// Superblock options (`rw,size=16384k,mode=700`).
    pub super_options: Vec<String>,
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    // 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    let (left, right) = line.split_once(" - ")?;
    let fields: Vec<&str> = left.split(' ').collect();
    let id = fields.first()?.parse().ok()?;
    let mount_point = unescape(fields.get(4)?);
    let options = fields.get(5)?.split(',').map(str::to_string).collect();
    let mut r = right.split(' ');
    let fstype = r.next()?.to_string();
    let _source = r.next()?;
    let super_options = r
        .next()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    Some(MountEntry {
        id,
        mount_point: PathBuf::from(mount_point),
        fstype,
        options,
        super_options,
    })
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\134` for '\').
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let n = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(n);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_with_optional_fields_and_escapes() {
        let text = "\
36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 - ext3 /dev/root rw,errors=continue
99 25 0:52 / /var/lib/mvm/tenants/acme/secrets rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,size=16384k,mode=700
30 24 0:26 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw
garbage";
        let m = parse(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].id, 99);
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt two"));
        assert_eq!(m[1].fstype, "tmpfs");
        assert_eq!(m[1].super_options, ["rw", "size=16384k", "mode=700"]);
        assert!(m[1].options.contains(&"noexec".to_string()));
        assert_eq!(m[2].fstype, "cgroup2");
    }
}
