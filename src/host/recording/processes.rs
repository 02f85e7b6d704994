//! The processes and their inputs on the recording host: VMs, the
//! metadata service, builds and nftables transactions.

use super::{Call, RecordingHost};
use crate::host::{Builds, Firewall, Services, Vms};
use crate::host::{HostError, HostResult};
use std::path::{Path, PathBuf};
use std::time::Duration;

impl Vms for RecordingHost {
    /// A pid and start time derived from the id, as a real launch returns.
    fn launch(&self, l: &crate::security::jailer::Launch) -> HostResult<crate::host::Launched> {
        let (program, args) = crate::security::jailer::argv(l);
        let call = Call::Launch {
            tenant: l.id.clone(),
            program,
            args,
        };
        let h = crate::digest::sha256(l.id.as_bytes());
        let pid = 1000 + u32::from_str_radix(&h[..6], 16).expect("hex");
        let id = l.id.clone();
        self.record(call, |m| {
            let r = crate::host::ProcessRef {
                pid,
                start_time: 4242,
            };
            m.vms.insert(id, r);
            Ok(crate::host::Launched {
                process: r,
                api_wait: Duration::ZERO,
            })
        })
    }
    /// No VM runs on the recording host: nothing is flushed.
    fn flush_metrics(
        &self,
        _: crate::host::ProcessRef,
        _: u32,
        _: &Path,
        _: &Path,
    ) -> HostResult<bool> {
        Ok(false)
    }
    /// The run's files and FIFOs, as entries (the previous run's renamed).
    fn prepare_logs(&self, logs: &crate::security::jailer::VmLogs) -> HostResult {
        let dir = logs.dir.clone();
        let runs = logs.previous_runs;
        self.record(Call::PrepareLogs { dir: dir.clone() }, |m| {
            use crate::state::logs;
            // As the real host: a run that never ran (empty files) is not kept.
            let ran = logs::RUN_FILES.iter().any(|f| {
                matches!(m.entries.get(&dir.join(f)), Some(super::Entry::File(b)) if !b.is_empty())
            });
            for file in logs::RUN_FILES {
                let steps = if ran {
                    logs::rotation(file, runs)
                } else {
                    vec![(file.to_string(), None)]
                };
                for (from, to) in steps {
                    if let Some(e) = m.entries.remove(&dir.join(&from))
                        && let Some(to) = to
                    {
                        m.entries.insert(dir.join(to), e);
                    }
                }
                m.entries
                    .insert(dir.join(file), super::Entry::File(Vec::new()));
            }
            for fifo in [logs::LOG_FIFO, logs::METRICS_FIFO] {
                m.entries
                    .insert(dir.join(fifo), super::Entry::File(Vec::new()));
            }
            Ok(())
        })
    }
    fn launch_dev(
        &self,
        d: &crate::security::jailer::DevLaunch,
    ) -> HostResult<(crate::host::ProcessRef, String)> {
        let (program, args) = crate::security::jailer::dev_argv(d);
        let call = Call::Launch {
            tenant: crate::security::jailer::DEV_ID.into(),
            program,
            args,
        };
        self.record(call, |m| {
            let r = crate::host::ProcessRef {
                pid: 999,
                start_time: 4242,
            };
            m.vms.insert(crate::security::jailer::DEV_ID.into(), r);
            Ok((r, String::new()))
        })
    }
    fn dev_status(
        &self,
        _: &crate::security::jailer::DevLaunch,
        r: crate::host::ProcessRef,
    ) -> (bool, bool) {
        let running = self.model().vms.values().any(|v| *v == r);
        (running, running)
    }
    fn stop(
        &self,
        r: crate::host::ProcessRef,
        _: u32,
        _: &str,
        _: &Path,
        _: Duration,
    ) -> HostResult {
        self.record(Call::Stop { pid: r.pid }, |m| {
            m.vms.retain(|_, v| *v != r);
            Ok(())
        })
    }
    /// The running VM of `id`, as the real scan finds it.
    fn find(&self, _: &Path, _: u32, _: &str, id: &str) -> Option<crate::host::ProcessRef> {
        self.model().vms.get(id).copied()
    }
    fn identify(&self, pid: u32, _: u32, _: &str, id: &str) -> Option<crate::host::ProcessRef> {
        self.model().vms.get(id).copied().filter(|r| r.pid == pid)
    }
}

impl Services for RecordingHost {
    fn start_metadata(
        &self,
        listen: &str,
        policy: crate::security::metadata::Policy,
        _: &Path,
        started: &mut dyn FnMut(crate::host::ProcessRef) -> HostResult,
    ) -> HostResult<crate::host::ProcessRef> {
        self.record(
            Call::StartMetadata {
                listen: listen.to_string(),
                per_sec: policy.per_sec,
                burst: policy.burst,
                tokens: policy.tokens,
            },
            |_| Ok(()),
        )?;
        let r = crate::host::ProcessRef {
            pid: 4200,
            start_time: 42,
        };
        self.model().service = Some((r, listen.to_string()));
        if let Err(e) = started(r) {
            self.model().service = None;
            return Err(e);
        }
        Ok(r)
    }
    fn stop_service(&self, r: crate::host::ProcessRef) -> HostResult {
        self.record(Call::Stop { pid: r.pid }, |m| {
            if m.service.as_ref().is_some_and(|(s, _)| *s == r) {
                m.service = None;
            }
            Ok(())
        })
    }
}

impl Builds for RecordingHost {
    /// A lock derived from the flake reference, as a real lock is from its
    /// source.
    fn flake_lock(&self, _: &crate::spec::node::NixConfig, flake_ref: &str) -> HostResult<String> {
        Ok(format!(
            "sha256-{}=",
            &crate::digest::sha256(flake_ref.as_bytes())[..43]
        ))
    }
    /// A store path derived from the installable; the files hashed from
    /// their names. Recorded, as a build changes the host.
    fn build(
        &self,
        _: &crate::spec::node::NixConfig,
        flake_ref: &str,
        profile: &str,
    ) -> HostResult<crate::host::Built> {
        let what = crate::host::vm::nixbuild::installable(flake_ref, profile);
        let digest = crate::digest::sha256(what.as_bytes());
        let out = PathBuf::from(format!("/nix/store/{}-mvm-{profile}", &digest[..32]));
        let call = Call::NixBuild {
            installable: what.clone(),
        };
        self.record(call, |m| {
            m.store.insert(out.clone());
            Ok(crate::host::Built {
                files: crate::host::vm::nixbuild::CONTRACT_FILES
                    .iter()
                    .map(|n| {
                        (
                            n.to_string(),
                            out.join(n),
                            crate::digest::sha256(n.as_bytes()),
                        )
                    })
                    .collect(),
                out: out.clone(),
                log: b"built\n".to_vec(),
            })
        })
    }
}

impl Firewall for RecordingHost {
    fn nft_apply(&self, commands: &serde_json::Value) -> HostResult {
        let call = Call::NftApply {
            commands: commands
                .get("nftables")
                .and_then(serde_json::Value::as_array)
                .cloned()
                .unwrap_or_default(),
        };
        // All of it, or none of it, like nft.
        self.record(call, |m| {
            let mut next = m.nft.clone();
            super::nft::transact(&mut next, commands)
                .map_err(|e| HostError::other_on("apply", "the nftables transaction", e))?;
            m.nft = next;
            Ok(())
        })
    }
}
