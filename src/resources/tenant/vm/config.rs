//! The Firecracker config document of a tenant's VM: the types (only the
//! fields mvm sets, named as Firecracker's `VmmConfig` names them), the
//! config derived from the spec, its sha256 and its JSON form as plans
//! carry it. Pure.

use crate::observed::ObservedTenant;
use crate::spec::jail::JailLayout;
use crate::spec::types::MacAddr;
use crate::spec::{NodeConfig, TenantSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::Ipv4Addr;

/// The document name of the Firecracker config in plans.
pub const CONFIG_DOC: &str = "firecracker_config";

/// Kernel command line: no serial console (prod-host-setup: a chatty guest
/// must not fill host logs), keyboard controller kept so SendCtrlAltDel can
/// stop the guest cleanly, static network config via `ip=`.
const BOOT_ARGS: &str =
    "reboot=k panic=1 pci=off 8250.nr_uarts=0 i8042.noaux i8042.nomux i8042.dumbkbd";

/// Firecracker's config file, with only the fields mvm sets. Field names
/// follow Firecracker's `VmmConfig`; Firecracker silently ignores unknown
/// top-level keys, so these types are the single source of the names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcConfig {
    #[serde(rename = "boot-source")]
    pub boot_source: BootSource,
    pub drives: Vec<Drive>,
    #[serde(rename = "machine-config")]
    pub machine_config: MachineConfig,
    #[serde(rename = "network-interfaces")]
    pub network_interfaces: Vec<NetworkInterface>,
    pub logger: Logger,
    pub metrics: Metrics,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSource {
    pub kernel_image_path: String,
    pub boot_args: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drive {
    pub drive_id: String,
    pub path_on_host: String,
    pub is_root_device: bool,
    /// Always sent: Firecracker defaults it to false (writable).
    pub is_read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    pub vcpu_count: u8,
    pub mem_size_mib: u32,
    pub smt: bool,
    pub track_dirty_pages: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterface {
    pub iface_id: String,
    pub host_dev_name: String,
    pub guest_mac: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logger {
    pub log_path: String,
    pub level: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub metrics_path: String,
}

/// The Firecracker config of a tenant. Paths are relative to the jail's
/// root (`/vmlinux`); without a jailer (`jailed` false) Firecracker runs
/// unchrooted, so they are that root's host paths instead.
pub fn fc_config(
    node: &NodeConfig,
    spec: &TenantSpec,
    ip: Ipv4Addr,
    mac: MacAddr,
    jailed: bool,
) -> FcConfig {
    let root = if jailed {
        String::new()
    } else {
        JailLayout::new(&node.state_dir, &node.firecracker.binary, &spec.tenant_id)
            .root
            .display()
            .to_string()
    };
    let at = |p: &str| format!("{root}{p}");
    let b = &node.bridge;
    let dns = b.dns.first().map(|d| d.to_string()).unwrap_or_default();
    let boot_args = format!(
        "{BOOT_ARGS} ip={}::{}:{}:{}:eth0:off:{dns}",
        ip,
        b.gateway,
        b.subnet.netmask(),
        spec.tenant_id
    );
    let mut drives = vec![Drive {
        drive_id: "rootfs".into(),
        path_on_host: at("/rootfs.ext4"),
        is_root_device: true,
        is_read_only: true,
    }];
    if spec.data_mib.is_some() {
        drives.push(Drive {
            drive_id: "data".into(),
            path_on_host: at("/data.ext4"),
            is_root_device: false,
            is_read_only: false,
        });
    }
    drives.push(Drive {
        drive_id: "secrets".into(),
        path_on_host: at("/secrets.img"),
        is_root_device: false,
        is_read_only: true,
    });
    FcConfig {
        boot_source: BootSource {
            kernel_image_path: at("/vmlinux"),
            boot_args,
        },
        drives,
        machine_config: MachineConfig {
            vcpu_count: spec.vcpus,
            mem_size_mib: spec.mem_mib,
            smt: false,
            track_dirty_pages: false,
        },
        network_interfaces: vec![NetworkInterface {
            iface_id: "eth0".into(),
            host_dev_name: spec.tenant_id.tap_name(),
            guest_mac: mac.to_string(),
        }],
        logger: Logger {
            log_path: at("/fc.log"),
            level: "Info".into(),
        },
        metrics: Metrics {
            metrics_path: at("/fc.metrics"),
        },
    }
}

/// The sha256 of the config's JSON text as mvm writes it for Firecracker.
pub fn config_sha256(cfg: &FcConfig) -> String {
    crate::digest::sha256_json(cfg)
}

/// The config as a JSON value, as carried in plans.
pub fn config_value(cfg: &FcConfig) -> Value {
    serde_json::to_value(cfg).expect("config serializes")
}

/// The config the running VM was launched with, if recorded.
pub fn observed_config(obs: &ObservedTenant) -> Option<&Value> {
    let p = obs.vm.as_ref()?;
    let r = obs.record.as_ref()?.vm.as_ref()?;
    (r.pid == p.pid && r.start_time == p.start_time).then_some(&r.fc_config)
}
