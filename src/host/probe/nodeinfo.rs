//! What `mvm node info` reads beyond the probes: the kernel release, the
//! memory, and the versions the installed binaries report.

use crate::spec::NodeConfig;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

pub use crate::host::HostFacts;

pub fn host_facts(node: &NodeConfig) -> HostFacts {
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let memory_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| mem_total_mib(&m));
    let mut versions = BTreeMap::new();
    for (name, bin) in [
        ("firecracker", &node.firecracker.binary),
        ("jailer", &node.firecracker.jailer),
        ("nix", &node.nix.binary),
    ] {
        if let Some(v) = version(bin) {
            versions.insert(name.to_string(), v);
        }
    }
    let kvm_problem = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "no /dev/kvm".to_string(),
            _ => format!("/dev/kvm: {e}"),
        })
        .err();
    let nft_version = ["/usr/sbin/nft", "/sbin/nft"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .and_then(version);
    HostFacts {
        kernel,
        memory_mib,
        versions,
        kvm_problem,
        nft_version,
        nf_tables: Path::new("/sys/module/nf_tables").exists(),
    }
}

/// `MemTotal` in MiB from /proc/meminfo text.
pub fn mem_total_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// `<bin> --version`'s first line: run with no environment and no stdin,
/// killed after 2 s; printable ASCII only, at most 120 characters.
fn version(bin: &Path) -> Option<String> {
    use std::io::Read;
    if !bin.is_file() {
        return None;
    }
    let mut child = std::process::Command::new(bin)
        .arg("--version")
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut out = Vec::new();
    child.stdout.take()?.take(4096).read_to_end(&mut out).ok()?;
    first_line(&out)
}

/// The first non-empty line, printable ASCII, capped.
pub fn first_line(out: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(out);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let clean: String = line
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(120)
        .collect();
    (!clean.is_empty()).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_version_lines() {
        assert_eq!(
            mem_total_mib("MemTotal:       24590132 kB\nMemFree: 1 kB\n"),
            Some(24013)
        );
        assert_eq!(mem_total_mib("MemFree: 1 kB\n"), None);
        assert_eq!(
            first_line(b"\nFirecracker v1.7.0\n\nmore"),
            Some("Firecracker v1.7.0".into())
        );
        assert_eq!(
            first_line(b"nix (Nix) 2.18.1\x1b[0m\n"),
            Some("nix (Nix) 2.18.1[0m".into())
        );
        assert_eq!(first_line(b"\n \n"), None);
    }
}
