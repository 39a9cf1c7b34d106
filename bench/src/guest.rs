//! Real QEMU guests for integration tests.
//!
//! A guest boots the distribution's kernel (Debian's `linux-image-amd64`: the package it
//! depends on is fetched with `apt-get download` and unpacked into a cache, never installed on
//! the host) with a busybox initramfs built here. Its one NIC is virtio-net on a tap, attached as
//! libvirt and Nova attach it: QEMU opens the tap with `IFF_VNET_HDR` and the guest keeps
//! virtio-net's default offloads (checksum and TSO). The initramfs's init loads the NIC driver
//! and its dependencies from the kernel package (in `modules.dep` order), gives `eth0` the
//! address passed on the kernel command line, and then runs one shell command per line read from
//! the serial console; the test drives it through QEMU's stdin and stdout ([`Guest::sh`]).
//!
//! The CPU runs under KVM, or under QEMU's TCG where this host's KVM cannot run a stock kernel
//! ([`Accel::detect`]). Host tools: `apt-get`, `dpkg-deb`, `xz`, `qemu-system-x86_64` and a
//! static busybox (`scripts/deps` installs them).
//!
//! Every guest is bounded in time: QEMU runs under `timeout`, and [`Guest`] stops it on drop.
//! A guest talks only to its NIC's tap or vhost-user socket: no user networking, no host
//! address.
//!
//! Thread-safety: a [`Guest`] is owned by one test; a reader thread of its own copies the
//! console into a shared buffer.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{sleep, JoinHandle};
use std::time::{Duration, Instant};

use crate::{run, BenchError};

/// The Debian metapackage that names the distribution's current kernel package.
pub const KERNEL_METAPACKAGE: &str = "linux-image-amd64";

/// Modules the guest loads (with their dependencies): the PCI transport and the NIC driver.
pub const GUEST_MODULES: &[&str] = &["virtio_pci", "virtio_net"];

/// The line init prints on the console once `eth0` is configured and commands are read.
const READY: &str = "brink-guest: ready";
/// The prefix of the line init prints when set-up failed.
const FAILED: &str = "brink-guest: failed";
/// The prefix of the line that ends each command's output: `@@brink-SEQ:STATUS`.
const DONE: &str = "@@brink-";

/// True if KVM can be used here (`/dev/kvm` opens for reading and writing).
pub fn kvm_available() -> bool {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// How QEMU runs the guest's CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM: `-enable-kvm -cpu host`.
    Kvm,
    /// QEMU's own emulation (TCG): for hosts whose KVM cannot run a stock kernel.
    Tcg,
}

impl Accel {
    /// The accelerator for the guests on this host, and why; `None` without a usable
    /// `/dev/kvm`. `BRINK_GUEST_ACCEL=kvm|tcg` chooses. Otherwise KVM, except where `/dev/kvm`
    /// is PVM (the `kvm_pvm` module, a shadow-paging hypervisor for hosts that are VMs without
    /// hardware virtualisation): PVM runs PVM-enabled guest kernels only. A stock kernel such as
    /// Debian's runs there in KVM's instruction emulator, minutes to boot, and stops with "KVM
    /// internal error ... emulation failure" (seen on `cmpxchg16b`, then `xrstor`); QEMU's TCG
    /// boots it in seconds.
    pub fn detect() -> Option<(Accel, String)> {
        if !kvm_available() {
            return None;
        }
        match std::env::var("BRINK_GUEST_ACCEL").as_deref() {
            Ok("kvm") => return Some((Accel::Kvm, "BRINK_GUEST_ACCEL=kvm".into())),
            Ok("tcg") => return Some((Accel::Tcg, "BRINK_GUEST_ACCEL=tcg".into())),
            _ => {}
        }
        let module = |m: &str| Path::new("/sys/module").join(m).exists();
        if module("kvm_pvm") && !module("kvm_intel") && !module("kvm_amd") {
            Some((
                Accel::Tcg,
                "/dev/kvm is PVM (kvm_pvm), which runs PVM-enabled guest kernels only: \
                 Debian's kernel would be emulated (minutes to boot, then an emulation \
                 failure), so QEMU emulates the CPU itself (TCG)"
                    .into(),
            ))
        } else {
            Some((Accel::Kvm, "hardware KVM".into()))
        }
    }

    fn qemu_args(self) -> &'static [&'static str] {
        match self {
            Accel::Kvm => &["-enable-kvm", "-cpu", "host"],
            // The plain 64-bit model: fewer features to emulate, a faster boot than `max`.
            Accel::Tcg => &["-accel", "tcg", "-cpu", "qemu64"],
        }
    }
}

/// Where unpacked kernels are kept between runs: `BRINK_GUEST_CACHE`, or `/var/cache/brink/guest`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("BRINK_GUEST_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/brink/guest"), PathBuf::from)
}

fn io_error(what: impl Display) -> impl FnOnce(std::io::Error) -> BenchError {
    move |e| BenchError::Command {
        command: what.to_string(),
        output: e.to_string(),
    }
}

/// An unpacked distribution kernel: its image and its modules.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The kernel release (`uname -r` in the guest), e.g. `6.1.0-57-amd64`.
    pub release: String,
    /// The bootable image (`boot/vmlinuz-RELEASE`).
    pub vmlinuz: PathBuf,
    /// The same kernel uncompressed (`boot/vmlinux-RELEASE`, an ELF image QEMU boots through its
    /// PVH entry), if it could be extracted: it saves the guest decompressing itself, seconds
    /// under TCG.
    pub vmlinux: Option<PathBuf>,
    /// `lib/modules/RELEASE` of the package, with a `modules.dep` generated for it.
    pub modules: PathBuf,
}

impl Kernel {
    /// The kernel package [`KERNEL_METAPACKAGE`] depends on, unpacked in `cache` (downloaded and
    /// unpacked on first use, reused after that). Needs `apt-get`, `dpkg-deb` and busybox (its
    /// `depmod` writes `modules.dep`, which the package leaves to its install script).
    pub fn distro(cache: &Path) -> Result<Kernel, BenchError> {
        // Guest tests run in parallel threads, and apt takes its locks without waiting: one
        // thread fetches (and may update the lists) while the others wait, then find its copy.
        static FETCHING: Mutex<()> = Mutex::new(());
        let _one_at_a_time = FETCHING.lock().unwrap_or_else(|e| e.into_inner());
        // A fresh machine may have no package lists yet, and old lists may name a kernel the
        // archive no longer has: on failure, update them once and try again.
        let fetch = || -> Result<PathBuf, BenchError> {
            let package = kernel_package()?;
            let dir = cache.join(&package);
            if !dir.join(".complete").exists() {
                unpack(&package, cache, &dir)?;
            }
            Ok(dir)
        };
        let dir = match fetch() {
            Ok(dir) => dir,
            Err(first) => {
                run("apt-get", &["update", "-qq"])?;
                fetch().map_err(|e| {
                    BenchError::Config(format!("{first}; after apt-get update: {e}"))
                })?
            }
        };
        let mut kernel = Kernel::in_dir(&dir)?;
        if kernel.vmlinux.is_none() {
            let out = dir.join(format!("boot/vmlinux-{}", kernel.release));
            // Without it the guest boots the compressed image, only slower.
            if extract_vmlinux(&kernel.vmlinuz, &out).is_ok() {
                kernel.vmlinux = Some(out);
            }
        }
        Ok(kernel)
    }

    /// The image to boot: the uncompressed one where there is one.
    pub fn boot_image(&self) -> &Path {
        self.vmlinux.as_deref().unwrap_or(&self.vmlinuz)
    }

    /// The kernel unpacked in `dir` (a `dpkg-deb -x` of a kernel package).
    pub fn in_dir(dir: &Path) -> Result<Kernel, BenchError> {
        let lib = dir.join("lib/modules");
        let release = fs::read_dir(&lib)
            .map_err(io_error(format!("read {}", lib.display())))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|r| dir.join(format!("boot/vmlinuz-{r}")).exists())
            .ok_or_else(|| {
                BenchError::Config(format!(
                    "{}: no boot/vmlinuz-RELEASE beside lib/modules/RELEASE",
                    dir.display()
                ))
            })?;
        let vmlinux = dir.join(format!("boot/vmlinux-{release}"));
        Ok(Kernel {
            vmlinuz: dir.join(format!("boot/vmlinuz-{release}")),
            vmlinux: vmlinux.exists().then_some(vmlinux),
            modules: lib.join(&release),
            release,
        })
    }

    /// The module files to load for `names`, each after the modules it depends on (from
    /// `modules.dep`). Modules built into the kernel are left out.
    pub fn load_order(&self, names: &[&str]) -> Result<Vec<PathBuf>, BenchError> {
        let path = self.modules.join("modules.dep");
        let text =
            fs::read_to_string(&path).map_err(io_error(format!("read {}", path.display())))?;
        let deps = parse_modules_dep(&text);
        let builtin = fs::read_to_string(self.modules.join("modules.builtin")).unwrap_or_default();
        let builtin: BTreeSet<String> = builtin.lines().map(module_name).collect();
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for name in names {
            let name = module_name(name);
            if builtin.contains(&name) {
                continue;
            }
            let Some((file, _)) = deps.get(&name) else {
                return Err(BenchError::Config(format!(
                    "module {name} is not in {}",
                    path.display()
                )));
            };
            visit(file, &deps, &mut seen, &mut order, 0)?;
        }
        Ok(order.iter().map(|f| self.modules.join(f)).collect())
    }
}

/// The package the kernel metapackage depends on, from `apt-cache depends`.
fn kernel_package() -> Result<String, BenchError> {
    let out = run("apt-cache", &["depends", KERNEL_METAPACKAGE])?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string)
        .ok_or_else(|| {
            BenchError::Config(format!(
                "apt-cache names no kernel for {KERNEL_METAPACKAGE}"
            ))
        })
}

/// Writes the ELF kernel inside the x86 boot image `vmlinuz` (an xz stream, as Debian builds it)
/// to `out`.
fn extract_vmlinux(vmlinuz: &Path, out: &Path) -> Result<(), BenchError> {
    const XZ_MAGIC: &[u8] = b"\xfd7zXZ\0";
    let image = fs::read(vmlinuz).map_err(io_error(format!("read {}", vmlinuz.display())))?;
    let at = image
        .windows(XZ_MAGIC.len())
        .position(|w| w == XZ_MAGIC)
        .ok_or_else(|| BenchError::Config(format!("{}: no xz payload", vmlinuz.display())))?;
    let part = out.with_file_name(format!(".vmlinux.{}.part", std::process::id()));
    let file = fs::File::create(&part).map_err(io_error(format!("create {}", part.display())))?;
    let mut xz = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(file)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_error("xz (install xz-utils)"))?;
    // The trailer after the stream is not xz: --single-stream stops before it, and may close
    // its input early.
    if let Some(mut stdin) = xz.stdin.take() {
        let _ = stdin.write_all(&image[at..]);
    }
    let status = xz.wait_with_output().map_err(io_error("xz -dc"))?;
    let elf = fs::File::open(&part)
        .and_then(|mut f| {
            let mut magic = [0u8; 4];
            f.read_exact(&mut magic).map(|()| magic)
        })
        .is_ok_and(|m| &m == b"\x7fELF");
    if !status.status.success() || !elf {
        let _ = fs::remove_file(&part);
        return Err(BenchError::Command {
            command: format!("xz -dc {}", vmlinuz.display()),
            output: String::from_utf8_lossy(&status.stderr).trim().to_string(),
        });
    }
    fs::rename(&part, out).map_err(io_error(format!("mv {}", part.display())))
}

/// Downloads `package` and unpacks it into `dir`, through a scratch directory in `cache` so that
/// a run that stops half-way leaves nothing that looks complete.
fn unpack(package: &str, cache: &Path, dir: &Path) -> Result<(), BenchError> {
    let work = cache.join(format!(".{package}.{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(io_error(format!("mkdir {}", work.display())))?;
    let result = (|| {
        let out = Command::new("apt-get")
            .args(["download", "-qq", package])
            .current_dir(&work)
            .output()
            .map_err(io_error("apt-get download"))?;
        if !out.status.success() {
            return Err(BenchError::Command {
                command: format!("apt-get download {package}"),
                output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let deb = fs::read_dir(&work)
            .map_err(io_error(format!("read {}", work.display())))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or_else(|| BenchError::Config(format!("apt-get download {package}: no .deb")))?;
        let root = work.join("root");
        run(
            "dpkg-deb",
            &["-x", &deb.to_string_lossy(), &root.to_string_lossy()],
        )?;
        fs::remove_file(&deb).map_err(io_error(format!("rm {}", deb.display())))?;
        let kernel = Kernel::in_dir(&root)?;
        run(
            "busybox",
            &["depmod", "-b", &root.to_string_lossy(), &kernel.release],
        )?;
        fs::write(root.join(".complete"), package)
            .map_err(io_error(format!("write {}/.complete", root.display())))?;
        match fs::rename(&root, dir) {
            Ok(()) => Ok(()),
            // Another run finished first: use its copy.
            Err(_) if dir.join(".complete").exists() => Ok(()),
            Err(e) => Err(io_error(format!("mv {} {}", root.display(), dir.display()))(e)),
        }
    })();
    let _ = fs::remove_dir_all(&work);
    result
}

/// A module's name as the kernel knows it: the file stem, with `-` as `_`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// `modules.dep`: module name -> (its file, the files it needs), paths relative to the
/// modules directory.
fn parse_modules_dep(text: &str) -> HashMap<String, (String, Vec<String>)> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(file, deps)| {
            let deps = deps.split_whitespace().map(str::to_string).collect();
            (module_name(file), (file.trim().to_string(), deps))
        })
        .collect()
}

/// Appends `file` to `order` after everything it depends on (depth first).
fn visit(
    file: &str,
    deps: &HashMap<String, (String, Vec<String>)>,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<String>,
    depth: usize,
) -> Result<(), BenchError> {
    if depth > 64 {
        return Err(BenchError::Config(format!(
            "modules.dep: dependency cycle at {file}"
        )));
    }
    if !seen.insert(file.to_string()) {
        return Ok(());
    }
    let needs = deps
        .get(&module_name(file))
        .map(|(_, d)| d.clone())
        .unwrap_or_default();
    for dep in &needs {
        visit(dep, deps, seen, order, depth + 1)?;
    }
    order.push(file.to_string());
    Ok(())
}

/// An initramfs in the kernel's `newc` cpio format (uncompressed).
#[derive(Debug, Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            u32::try_from(data.len()).unwrap_or(u32::MAX),
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            u32::try_from(name.len() + 1).unwrap_or(u32::MAX),
            0, // check
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad(4);
        self.out.extend_from_slice(data);
        self.pad(4);
    }

    fn pad(&mut self, to: usize) {
        while !self.out.len().is_multiple_of(to) {
            self.out.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100000 | mode, (0, 0), data);
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120777, (0, 0), target.as_bytes());
    }

    fn char_device(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020600, (major, minor), &[]);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.pad(512);
        self.out
    }
}

/// True if `elf` is an ELF executable that needs no dynamic loader (no `PT_INTERP`).
fn is_static_elf(elf: &[u8]) -> bool {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    // 64-bit little-endian only: the guest is x86-64.
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(phnum)).all(|i| {
        let at = phoff + i * usize::from(phentsize);
        // PT_INTERP is 3.
        elf.get(at..at + 4) != Some(&3u32.to_le_bytes()[..])
    })
}

/// The init script: mounts, loads `modules` (files in `/lib/modules`, in order), configures
/// `eth0` with the `brink.ip=ADDR/LEN` of the kernel command line, then runs console commands.
fn init_script(modules: &[String]) -> String {
    format!(
        r#"#!/bin/sh
# brink test guest. Commands arrive on the console as "SEQ COMMAND" lines; after each one
# the status is printed as "{DONE}SEQ:STATUS".
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {modules}; do
  insmod /lib/modules/$m || echo "{FAILED}: insmod $m"
done
addr=
for w in $(cat /proc/cmdline); do
  case $w in brink.ip=*) addr=${{w#brink.ip=}} ;; esac
done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
ip link set lo up
ip addr add "$addr" dev eth0 && ip link set eth0 up || echo "{FAILED}: eth0 $addr"
echo 1 > /proc/sys/kernel/printk
stty -echo
echo "{READY} $addr"
exec sh -c 'while read -r seq line; do eval "$line"; echo "{DONE}$seq:$?"; done'
"#,
        modules = modules.join(" ")
    )
}

/// Writes an initramfs to `out` holding the static busybox at `busybox`, the init script and the
/// [`GUEST_MODULES`] of `kernel` with their dependencies.
pub fn build_initramfs(kernel: &Kernel, busybox: &Path, out: &Path) -> Result<(), BenchError> {
    let bin = fs::read(busybox).map_err(io_error(format!("read {}", busybox.display())))?;
    if !is_static_elf(&bin) {
        return Err(BenchError::Config(format!(
            "{} is not a static x86-64 executable: install busybox-static",
            busybox.display()
        )));
    }
    let mut cpio = Cpio::default();
    for d in ["bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"] {
        cpio.dir(d);
    }
    cpio.char_device("dev/console", 5, 1);
    cpio.file("bin/busybox", 0o755, &bin);
    cpio.symlink("bin/sh", "busybox");
    let mut names = Vec::new();
    for path in kernel.load_order(GUEST_MODULES)? {
        let data = fs::read(&path).map_err(io_error(format!("read {}", path.display())))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        cpio.file(&format!("lib/modules/{name}"), 0o644, &data);
        names.push(name);
    }
    cpio.file("init", 0o755, init_script(&names).as_bytes());
    fs::write(out, cpio.finish()).map_err(io_error(format!("write {}", out.display())))
}

/// What a guest's virtio-net NIC is attached to.
#[derive(Debug, Clone)]
pub enum Nic {
    /// An existing tap, as libvirt and Nova attach one (with vhost-net where the host has it).
    Tap(String),
    /// A vhost-user socket: QEMU creates it and waits for the switch to connect (server mode,
    /// what Nova and os-vif use with Open vSwitch's `dpdkvhostuserclient`). The guest's memory
    /// is then a shared memfd, so the switch can map it.
    VhostUser(PathBuf),
}

impl Nic {
    /// QEMU's arguments for this NIC with MAC `mac`, in a guest of `memory_mib` MiB and `vcpus`
    /// vCPUs run with `accel`. A vhost-user NIC of a guest with several vCPUs gets a queue
    /// pair per vCPU (`queues=N`, `mq=on`), as Nova gives a guest with
    /// `hw_vif_multiqueue_enabled`; the guest's driver then enables them all by itself.
    ///
    /// A vhost-user NIC under TCG has no MSI-X (`vectors=0`, legacy INTx): QEMU 7.2 then has
    /// no KVM irqfds, yet with vhost-user it still routes an unmasked MSI-X vector to one, and
    /// dies with SIGSEGV (a NULL `vector_irqfd` in `kvm_virtio_pci_irqfd_use`) as soon as the
    /// guest's driver enables the device.
    fn qemu_args(&self, mac: &str, memory_mib: u32, vcpus: u32, accel: Accel) -> Vec<String> {
        let nic = format!("virtio-net-pci,netdev=n0,mac={mac}");
        match self {
            Nic::Tap(tap) => {
                let vhost = if Path::new("/dev/vhost-net").exists() {
                    "on"
                } else {
                    "off"
                };
                let netdev =
                    format!("tap,id=n0,ifname={tap},script=no,downscript=no,vhost={vhost}");
                vec!["-netdev".into(), netdev, "-device".into(), nic]
            }
            Nic::VhostUser(socket) => {
                let (mut netdev, mut device) = ("vhost-user,id=n0,chardev=c0".to_string(), nic);
                if vcpus > 1 {
                    netdev.push_str(&format!(",queues={vcpus}"));
                    device.push_str(",mq=on");
                }
                match accel {
                    // MSI-X: a vector for each queue, the control queue and configuration.
                    Accel::Kvm if vcpus > 1 => {
                        device.push_str(&format!(",vectors={}", 2 * vcpus + 2));
                    }
                    Accel::Kvm => {}
                    Accel::Tcg => device.push_str(",vectors=0"),
                }
                vec![
                    "-object".into(),
                    format!("memory-backend-memfd,id=mem,size={memory_mib}M,share=on"),
                    "-numa".into(),
                    "node,memdev=mem".into(),
                    "-chardev".into(),
                    format!("socket,id=c0,path={},server=on,wait=off", socket.display()),
                    "-netdev".into(),
                    netdev,
                    "-device".into(),
                    device,
                ]
            }
        }
    }
}

/// How to start one guest.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    /// A short name for messages and log files.
    pub name: String,
    /// The kernel image to boot ([`Kernel::boot_image`]).
    pub kernel: PathBuf,
    /// The initramfs ([`build_initramfs`]).
    pub initramfs: PathBuf,
    /// What the NIC is attached to.
    pub nic: Nic,
    /// The NIC's MAC.
    pub mac: String,
    /// `eth0`'s address with prefix length, e.g. `10.90.0.1/24`.
    pub ip: String,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// vCPUs (at least 1); see [`Nic::qemu_args`] for what more than one gives the NIC.
    pub vcpus: u32,
    /// KVM or TCG.
    pub accel: Accel,
    /// Where QEMU's log, console copy and pid file go.
    pub dir: PathBuf,
    /// QEMU is killed after this long whatever happens.
    pub lifetime: Duration,
}

/// What a console command printed, and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The command's exit status (`$?`).
    pub status: i32,
    /// What it printed (stdout and stderr), without carriage returns.
    pub output: String,
}

/// A running QEMU/KVM guest, stopped on drop.
#[derive(Debug)]
pub struct Guest {
    name: String,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    console: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
    pidfile: PathBuf,
    started: Instant,
    seq: u32,
    /// QEMU's own messages (stderr).
    pub log: PathBuf,
}

impl Guest {
    /// Starts QEMU for `spec` (virtio-net as `spec.nic` says, serial console on stdio). Returns at once: [`Guest::wait_ready`] waits for init.
    pub fn boot(spec: &GuestSpec) -> Result<Guest, BenchError> {
        fs::create_dir_all(&spec.dir).map_err(io_error(format!("mkdir {}", spec.dir.display())))?;
        let log = spec.dir.join(format!("{}.qemu.log", spec.name));
        let pidfile = spec.dir.join(format!("{}.pid", spec.name));
        let _ = fs::remove_file(&pidfile);
        let log_file =
            fs::File::create(&log).map_err(io_error(format!("create {}", log.display())))?;
        let append = format!(
            "console=ttyS0 quiet panic=-1 ipv6.disable=1 brink.ip={}",
            spec.ip
        );
        let mut child = Command::new("timeout")
            .args(["-s", "KILL", &spec.lifetime.as_secs().max(1).to_string()])
            .arg("qemu-system-x86_64")
            .args(spec.accel.qemu_args())
            .args(["-smp", &spec.vcpus.max(1).to_string()])
            .args(["-m", &spec.memory_mib.to_string()])
            .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
            .args(["-serial", "stdio", "-monitor", "none"])
            .arg("-kernel")
            .arg(&spec.kernel)
            .arg("-initrd")
            .arg(&spec.initramfs)
            .args(["-append", &append])
            .args(
                spec.nic
                    .qemu_args(&spec.mac, spec.memory_mib, spec.vcpus.max(1), spec.accel),
            )
            .arg("-pidfile")
            .arg(&pidfile)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(io_error("qemu-system-x86_64 (install qemu-system-x86)"))?;
        let console = Arc::new(Mutex::new(Vec::new()));
        let copy = spec.dir.join(format!("{}.console", spec.name));
        let reader = child.stdout.take().map(|mut out| {
            let console = Arc::clone(&console);
            std::thread::spawn(move || {
                let mut file = fs::File::create(copy).ok();
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = out.read(&mut buf) {
                    if let Some(f) = file.as_mut() {
                        let _ = f.write_all(&buf[..n]);
                    }
                    if let Ok(mut c) = console.lock() {
                        c.extend_from_slice(&buf[..n]);
                    }
                }
            })
        });
        Ok(Guest {
            name: spec.name.clone(),
            stdin: child.stdin.take(),
            child: Some(child),
            console,
            reader,
            pidfile,
            started: Instant::now(),
            seq: 0,
            log,
        })
    }

    /// Everything the guest printed on its console so far, without carriage returns.
    pub fn console(&self) -> String {
        let bytes = self.console.lock().map(|c| c.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).replace('\r', "")
    }

    fn console_len(&self) -> usize {
        self.console.lock().map(|c| c.len()).unwrap_or(0)
    }

    fn console_from(&self, at: usize) -> String {
        let bytes = self
            .console
            .lock()
            .map(|c| c.get(at..).map(<[u8]>::to_vec).unwrap_or_default())
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).replace('\r', "")
    }

    /// True while QEMU runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// What went wrong, with the console and QEMU's log, for error messages.
    fn failure(&self, what: &str) -> BenchError {
        let qemu = fs::read_to_string(&self.log).unwrap_or_default();
        BenchError::Timeout(format!(
            "guest {}: {what}\n--- console ---\n{}\n--- qemu ---\n{}",
            self.name,
            self.console(),
            qemu.trim()
        ))
    }

    /// Waits until init has configured `eth0` and reads commands; returns the time since QEMU
    /// was started (the boot time).
    pub fn wait_ready(&mut self, limit: Duration) -> Result<Duration, BenchError> {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.console();
            if text.contains(FAILED) {
                return Err(self.failure("set-up failed"));
            }
            if text.contains(READY) {
                return Ok(self.started.elapsed());
            }
            if !self.is_running() {
                return Err(self.failure("QEMU exited during boot"));
            }
            if Instant::now() > deadline {
                return Err(self.failure(&format!("not ready after {limit:?}")));
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Runs `command` (one line of shell) in the guest and waits at most `limit` for it to end.
    /// Commands run one at a time: end one with `&` to leave it running in the background.
    pub fn sh(&mut self, command: &str, limit: Duration) -> Result<Reply, BenchError> {
        if command.contains('\n') {
            return Err(BenchError::Config(format!(
                "guest command spans lines: {command:?}"
            )));
        }
        self.seq += 1;
        let seq = self.seq;
        let start = self.console_len();
        let sent = self.stdin.as_mut().map(|s| {
            s.write_all(format!("{seq} {command}\n").as_bytes())
                .and_then(|()| s.flush())
        });
        if !matches!(sent, Some(Ok(()))) {
            return Err(self.failure(&format!("console closed before {command:?}")));
        }
        let marker = format!("{DONE}{seq}:");
        let deadline = Instant::now() + limit;
        loop {
            let text = self.console_from(start);
            if let Some(at) = text.find(&marker) {
                let rest = &text[at + marker.len()..];
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if rest.len() > digits.len() {
                    if let Ok(status) = digits.parse() {
                        return Ok(Reply {
                            status,
                            output: text[..at].to_string(),
                        });
                    }
                }
            }
            if !self.is_running() {
                return Err(self.failure(&format!("QEMU exited during {command:?}")));
            }
            if Instant::now() > deadline {
                return Err(self.failure(&format!("{command:?} did not finish in {limit:?}")));
            }
            sleep(Duration::from_millis(10));
        }
    }

    /// [`Guest::sh`], failing unless the command exits 0; returns its output.
    pub fn sh_ok(&mut self, command: &str, limit: Duration) -> Result<String, BenchError> {
        let reply = self.sh(command, limit)?;
        if reply.status == 0 {
            Ok(reply.output)
        } else {
            Err(BenchError::Command {
                command: format!("guest {}: {command}", self.name),
                output: format!("exit {}: {}", reply.status, reply.output.trim()),
            })
        }
    }

    /// Stops QEMU (SIGTERM, then SIGKILL after 3 s) and waits for it.
    pub fn stop(&mut self) {
        drop(self.stdin.take());
        let qemu = fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        let Some(mut child) = self.child.take() else {
            return;
        };
        for signal in ["-TERM", "-KILL"] {
            if let Some(pid) = qemu {
                let _ = run("kill", &[signal, &pid.to_string()]);
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    if let Some(r) = self.reader.take() {
                        let _ = r.join();
                    }
                    return;
                }
                sleep(Duration::from_millis(20));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_load_after_their_dependencies() {
        let dep = "kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko \
                   kernel/drivers/virtio/virtio_ring.ko kernel/drivers/net/net_failover.ko \
                   kernel/net/core/failover.ko\n\
                   kernel/drivers/virtio/virtio.ko:\n\
                   kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko\n\
                   kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
                   kernel/net/core/failover.ko:\n";
        let deps = parse_modules_dep(dep);
        let (mut seen, mut order) = (BTreeSet::new(), Vec::new());
        visit(
            "kernel/drivers/net/virtio_net.ko",
            &deps,
            &mut seen,
            &mut order,
            0,
        )
        .unwrap();
        let names: Vec<String> = order.iter().map(|f| module_name(f)).collect();
        assert_eq!(
            names,
            [
                "virtio",
                "virtio_ring",
                "failover",
                "net_failover",
                "virtio_net"
            ]
        );
        assert_eq!(module_name("kernel/a/snd-pcm.ko.xz"), "snd_pcm");
    }

    #[test]
    fn cpio_entries_are_aligned_and_terminated() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"#!/bin/sh\n");
        let out = c.finish();
        assert!(out.starts_with(b"070701"));
        assert_eq!(out.len() % 512, 0);
        // Header, "init\0" padded to 4, then the data.
        assert_eq!(&out[116..126], b"#!/bin/sh\n");
        assert!(out.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn static_elf_has_no_interpreter() {
        let mut elf = vec![0u8; 64 + 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20] = 64; // phoff
        elf[0x36] = 56; // phentsize
        elf[0x38] = 1; // phnum
        elf[64] = 1; // PT_LOAD
        assert!(is_static_elf(&elf));
        elf[64] = 3; // PT_INTERP
        assert!(!is_static_elf(&elf));
        assert!(!is_static_elf(b"#!/bin/sh"));
    }
}
