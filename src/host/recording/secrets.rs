//! `Secrets` on the model: generations staged on a tenant's modelled
//! tmpfs as the real host lays them out (`gen-<n>/` with the files, the
//! image and the manifest), refused where nothing is mounted, pruned by
//! the same rule.

use super::{Call, Entry, RecordingHost};
use crate::host::{HostError, HostResult, Secrets, SecretsStage};
use crate::security::secrets::{
    FILES, IMAGE, MANIFEST, STAGING_PREFIX, generation_dir, parse_generation_dir,
};
use std::path::Path;

impl Secrets for RecordingHost {
    fn stage_secrets(&self, dir: &Path, stage: &SecretsStage) -> HostResult {
        let call = Call::StageSecrets {
            dir: dir.to_path_buf(),
            generation: stage.generation,
            files: stage.files.iter().map(|f| f.name.clone()).collect(),
        };
        self.record(call, |m| {
            if !m.tmpfs.contains_key(dir) {
                return Err(HostError::other(
                    "stage secrets in",
                    dir,
                    "the tenant's secrets tmpfs is not mounted (run `mvm agent reconcile` to create the tenant's resources)",
                ));
            }
            let gen_dir = dir.join(generation_dir(stage.generation));
            if m.entries.contains_key(&gen_dir) {
                return Err(HostError::new(
                    "rename into place",
                    &gen_dir,
                    std::io::Error::from_raw_os_error(nix::libc::EEXIST),
                ));
            }
            m.entries.insert(gen_dir.clone(), Entry::Dir);
            m.entries.insert(gen_dir.join(FILES), Entry::Dir);
            for f in stage.files {
                // The model keeps sizes, not values: a test double holds no secret.
                m.entries.insert(
                    gen_dir.join(FILES).join(&f.name),
                    Entry::File(vec![0; f.value.len()]),
                );
            }
            m.entries.insert(
                gen_dir.join(IMAGE),
                Entry::File(format!("ext4 image of {} bytes", stage.image_bytes).into_bytes()),
            );
            m.entries
                .insert(gen_dir.join(MANIFEST), Entry::File(stage.manifest.clone()));
            Ok(())
        })
    }

    fn prune_secrets(&self, dir: &Path, below: u64, keep: &[u64]) -> HostResult {
        let call = Call::PruneSecrets {
            dir: dir.to_path_buf(),
            below,
            keep: keep.to_vec(),
        };
        self.record(call, |m| {
            let stale: Vec<_> = m
                .entries
                .keys()
                .filter(|p| p.parent() == Some(dir))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    match parse_generation_dir(name) {
                        Some(n) => n < below && !keep.contains(&n),
                        None => name.starts_with(STAGING_PREFIX),
                    }
                })
                .cloned()
                .collect();
            for p in stale {
                m.remove_under(&p);
            }
            Ok(())
        })
    }

    fn secrets_manifest(&self, dir: &Path, generation: u64) -> HostResult<Option<Vec<u8>>> {
        let path = dir.join(generation_dir(generation)).join(MANIFEST);
        Ok(self.file(&path))
    }
}
