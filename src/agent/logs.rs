//! `mvm tenant logs`: what a tenant's VM said, from the files its log
//! pump and its builds wrote under `<state>/tenants/<id>/logs/`
//! (`state/logs.rs`) and the metadata service's lines about it. Read-only:
//! no lock, nothing written.

use super::{AgentError, Node};
use crate::spec::types::TenantId;
use crate::state::logs;
use std::path::PathBuf;

/// A log `tenant logs` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The console and Firecracker's and the jailer's output.
    Vm,
    Firecracker,
    Build,
    Metadata,
}

impl Source {
    pub const ALL: [Source; 4] = [
        Source::Vm,
        Source::Firecracker,
        Source::Build,
        Source::Metadata,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Source::Vm => "vm",
            Source::Firecracker => "firecracker",
            Source::Build => "build",
            Source::Metadata => "metadata",
        }
    }

    /// Whether each run has its own (so `--previous` has one).
    fn per_run(self) -> bool {
        matches!(self, Source::Vm | Source::Firecracker)
    }
}

/// What to read.
#[derive(Debug, Clone)]
pub struct LogsRequest {
    pub id: TenantId,
    /// Empty: every source there is for the run asked.
    pub sources: Vec<Source>,
    pub since: Option<jiff::Timestamp>,
    pub lines: Option<usize>,
    /// Runs back (0: the current one).
    pub previous: u32,
}

/// One source's file and the lines of it that were asked for.
#[derive(Debug)]
pub struct Log {
    pub source: Source,
    pub path: PathBuf,
    /// `None`: the file is not there (never written, or rotated away).
    pub lines: Option<Vec<Vec<u8>>>,
}

/// The most of one file read: the newest bytes of it.
const READ_CAP: u64 = 64 << 20;

/// Parses `--since`: an RFC 3339 time, or a duration back from `now`.
pub fn parse_since(s: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp, AgentError> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let back = super::parse_duration_text(s).map_err(|e| {
        AgentError::Logs(format!(
            "--since {e}; or give a time like 2026-12-02T10:00:00Z"
        ))
    })?;
    let span = jiff::SignedDuration::try_from(back)
        .map_err(|_| AgentError::Logs(format!("--since {s:?} is too far back")))?;
    now.checked_sub(span)
        .map_err(|_| AgentError::Logs(format!("--since {s:?} is too far back")))
}

/// The sources a request reads, in the order shown, checked.
pub fn sources(req: &LogsRequest) -> Result<Vec<Source>, AgentError> {
    if req.sources.is_empty() {
        return Ok(Source::ALL
            .into_iter()
            .filter(|s| req.previous == 0 || s.per_run())
            .collect());
    }
    if req.previous > 0
        && let Some(s) = req.sources.iter().find(|s| !s.per_run())
    {
        return Err(AgentError::Logs(format!(
            "--previous reads a VM run's logs (--vm, --firecracker); the {} log is not kept per run",
            s.name()
        )));
    }
    Ok(req.sources.clone())
}

/// Where a source's file is for the run `previous` runs back.
pub fn path(node: &Node, id: &TenantId, source: Source, previous: u32) -> PathBuf {
    match source {
        Source::Vm => node.layout.log_file(id, logs::VM_LOG, previous),
        Source::Firecracker => node.layout.log_file(id, logs::FIRECRACKER_LOG, previous),
        Source::Build => node.layout.build_log(id),
        Source::Metadata => node.layout.metadata_log(),
    }
}

/// The tenant must have a directory on this node (a pruned one's logs
/// and metrics went with its archive).
pub(super) fn check_tenant(node: &Node, id: &TenantId) -> Result<(), AgentError> {
    if node.host.files.is_dir(&node.layout.tenant_dir(id)) {
        Ok(())
    } else {
        Err(AgentError::UnknownTenant { id: id.clone() })
    }
}

/// Reads the logs asked for.
pub fn read(node: &Node, req: &LogsRequest) -> Result<Vec<Log>, AgentError> {
    check_tenant(node, &req.id)?;
    let mut out = Vec::new();
    for source in sources(req)? {
        let path = path(node, &req.id, source, req.previous);
        let text = node.host.files.read_tail(&path, READ_CAP)?;
        let tenant = (source == Source::Metadata).then_some(req.id.as_str());
        let lines = text.map(|t| {
            logs::select(&t, req.since, req.lines, tenant)
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect()
        });
        out.push(Log {
            source,
            path,
            lines,
        });
    }
    Ok(out)
}

/// Follows the logs asked for (after what `read` showed): each new line
/// goes to `line` with its source, until the process is stopped. A new
/// run's files (the old ones rotated) are read from their start.
pub fn follow(
    node: &Node,
    req: &LogsRequest,
    line: &mut dyn FnMut(Source, &[u8]),
) -> Result<(), AgentError> {
    check_tenant(node, &req.id)?;
    let sources = sources(req)?;
    let paths: Vec<PathBuf> = sources
        .iter()
        .map(|s| path(node, &req.id, *s, req.previous))
        .collect();
    let word = format!(" tenant={} ", req.id);
    let mut bufs = vec![Vec::new(); paths.len()];
    crate::host::follow::follow(node.layout.root(), &paths, &mut |i, bytes| {
        bufs[i].extend_from_slice(bytes);
        for l in logs::take_lines(&mut bufs[i], false) {
            let ours = sources[i] != Source::Metadata
                || l.windows(word.len()).any(|w| w == word.as_bytes());
            if ours {
                line(sources[i], &l);
            }
        }
    })
    .map_err(AgentError::Host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(sources: Vec<Source>, previous: u32) -> LogsRequest {
        LogsRequest {
            id: TenantId::parse("acme").unwrap(),
            sources,
            since: None,
            lines: None,
            previous,
        }
    }

    #[test]
    fn previous_reads_only_what_is_kept_per_run() {
        assert_eq!(sources(&req(vec![], 0)).unwrap(), Source::ALL.to_vec());
        assert_eq!(
            sources(&req(vec![], 1)).unwrap(),
            vec![Source::Vm, Source::Firecracker]
        );
        let e = sources(&req(vec![Source::Build], 1)).unwrap_err();
        assert!(
            e.to_string().contains("the build log is not kept per run"),
            "{e}"
        );
    }

    #[test]
    fn since_is_a_time_or_a_duration_back() {
        let now: jiff::Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        assert_eq!(
            parse_since("10m", now).unwrap(),
            "2026-12-02T11:50:00Z".parse::<jiff::Timestamp>().unwrap()
        );
        assert_eq!(
            parse_since("1d", now).unwrap(),
            "2026-12-01T12:00:00Z".parse::<jiff::Timestamp>().unwrap()
        );
        assert_eq!(
            parse_since("2026-12-02T10:00:00Z", now).unwrap(),
            "2026-12-02T10:00:00Z".parse::<jiff::Timestamp>().unwrap()
        );
        assert!(parse_since("yesterday", now).is_err());
    }
}
