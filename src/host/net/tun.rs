//! Persistent tap devices through `/dev/net/tun` — the kernel refuses to
//! create tun/tap devices over rtnetlink. `TUNSETIFF` makes (or attaches
//! to) the tap, `TUNSETOWNER`/`TUNSETGROUP` let the tenant's jailed
//! Firecracker open it without privileges, `TUNSETPERSIST` keeps it after
//! this fd closes.

use std::io;
use std::os::fd::AsRawFd;

const IFF_TAP: nix::libc::c_short = 0x0002;
const IFF_NO_PI: nix::libc::c_short = 0x1000;

/// `struct ifreq` as TUNSETIFF reads it: the name and the flags.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: nix::libc::c_short,
    _pad: [u8; 22],
}

nix::ioctl_write_ptr_bad!(
    tunsetiff,
    nix::request_code_write!(b'T', 202, std::mem::size_of::<nix::libc::c_int>()),
    IfReq
);
nix::ioctl_write_int_bad!(
    tunsetpersist,
    nix::request_code_write!(b'T', 203, std::mem::size_of::<nix::libc::c_int>())
);
nix::ioctl_write_int_bad!(
    tunsetowner,
    nix::request_code_write!(b'T', 204, std::mem::size_of::<nix::libc::c_int>())
);
nix::ioctl_write_int_bad!(
    tunsetgroup,
    nix::request_code_write!(b'T', 206, std::mem::size_of::<nix::libc::c_int>())
);

/// Creates the persistent tap `name` (`IFF_TAP|IFF_NO_PI`) owned by
/// `uid:gid`, or sets the owner of the one that exists.
pub fn create_tap(name: &str, uid: u32, gid: u32) -> io::Result<()> {
    if name.is_empty() || name.len() > 15 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; 16],
        flags: IFF_TAP | IFF_NO_PI,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    let fd = tun.as_raw_fd();
    // SAFETY: `fd` is an open /dev/net/tun for the whole block, `req` a
    // properly laid out ifreq the kernel only reads; the int ioctls take
    // their argument by value.
    unsafe {
        tunsetiff(fd, &req)?;
        tunsetowner(fd, uid as nix::libc::c_int)?;
        tunsetgroup(fd, gid as nix::libc::c_int)?;
        tunsetpersist(fd, 1)?;
    }
    Ok(())
}
