//! The connection table saved across a restart: on SIGTERM brinkd writes every live connection
//! to [`FILE`] in its state directory, and the next start reads it back and removes it, so that
//! an upgrade cuts no established connection.
//!
//! Format, version 1: the 8 bytes `BRINKCT\0`, the version as a little-endian `u32`, then
//! postcard: a [`Header`] (when the table was saved, and the names of the networks and ports its
//! numbers stand for), one `Some(`[`Saved`]`)` per connection, and `None` at the end, so that a
//! file cut short is told from a whole one.

use std::fs;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use brink_conntrack::{Saved, Table};
use serde::{Deserialize, Serialize};

use crate::clock::unix_ns;

/// The file's name in the state directory.
pub const FILE: &str = "conntrack.bin";
const MAGIC: &[u8; 8] = b"BRINKCT\0";
const VERSION: u32 = 1;
/// Room postcard decodes one item in; a connection takes about 100 bytes, a header a few KiB.
const SCRATCH: usize = 64 * 1024;

/// `(number, name)` pairs: what the zones or port ids of saved connections stood for.
pub type Names = Vec<(u16, String)>;

/// What the records of a saved table refer to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Nanoseconds since the Unix epoch when the table was saved.
    pub saved_at: u64,
    /// `(zone, name)` of every network at the save.
    pub networks: Names,
    /// `(port id, name)` of every port at the save.
    pub ports: Names,
}

/// Why a saved table could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionsError {
    /// Filesystem error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a saved connection table.
    #[error("{path} is not a saved brink connection table: it starts with {found:02x?}, not {MAGIC:02x?}")]
    Foreign {
        /// The file.
        path: String,
        /// Its first bytes.
        found: Vec<u8>,
    },
    /// The file is of another format version.
    #[error("{path} is a connection table of format version {found}; this brinkd reads version {VERSION}")]
    Version {
        /// The file.
        path: String,
        /// Its version.
        found: u32,
    },
    /// The file is cut short or damaged.
    #[error("{path} is cut short or corrupt after {read} connections: {source}")]
    Corrupt {
        /// The file.
        path: String,
        /// Connections read before the damage.
        read: u64,
        /// The decoder's error.
        source: postcard::Error,
    },
}

/// Writes every live connection of `table` at time `now` (the table's clock) to `path`,
/// atomically (a crash leaves no file or a whole one); returns how many.
pub fn save(
    path: &Path,
    table: &Table,
    now: u64,
    networks: Names,
    ports: Names,
) -> Result<u64, ConnectionsError> {
    let tmp = path.with_extension("bin.tmp");
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| ConnectionsError::Io { path, source }
    };
    let encoding = |source| ConnectionsError::Corrupt {
        path: tmp.display().to_string(),
        read: 0,
        source,
    };
    let file = fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(MAGIC).map_err(io(&tmp))?;
    out.write_all(&VERSION.to_le_bytes()).map_err(io(&tmp))?;
    let header = Header {
        saved_at: unix_ns(),
        networks,
        ports,
    };
    postcard::to_io(&header, &mut out).map_err(encoding)?;
    let mut written = 0u64;
    let mut failed = None;
    table.export(now, |saved| {
        if failed.is_none() {
            match postcard::to_io(&Some(*saved), &mut out) {
                Ok(_) => written += 1,
                Err(e) => failed = Some(e),
            }
        }
    });
    if let Some(e) = failed {
        return Err(encoding(e));
    }
    postcard::to_io(&None::<Saved>, &mut out).map_err(encoding)?;
    let file = out.into_inner().map_err(|e| io(&tmp)(e.into_error()))?;
    file.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    Ok(written)
}

/// Reads the table saved in `path`, if there is one, calling `each` with the header and every
/// connection, whose ages already include the time since the save; returns how many it read.
pub fn load(
    path: &Path,
    mut each: impl FnMut(&Header, Saved),
) -> Result<Option<u64>, ConnectionsError> {
    let shown = path.display().to_string();
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ConnectionsError::Io {
                path: shown,
                source,
            })
        }
    };
    let mut input = BufReader::with_capacity(1 << 20, file);
    let mut start = [0u8; 12];
    let got = read_up_to(&mut input, &mut start).map_err(|source| ConnectionsError::Io {
        path: shown.clone(),
        source,
    })?;
    if got < MAGIC.len() || start[..8] != MAGIC[..] {
        return Err(ConnectionsError::Foreign {
            path: shown,
            found: start[..got.min(8)].to_vec(),
        });
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&start[8..12]);
    let version = u32::from_le_bytes(version);
    if got < start.len() || version != VERSION {
        return Err(ConnectionsError::Version {
            path: shown,
            found: version,
        });
    }
    let mut scratch = vec![0u8; SCRATCH];
    let mut read = 0u64;
    let corrupt = |read, source| ConnectionsError::Corrupt {
        path: shown.clone(),
        read,
        source,
    };
    let (header, (mut input, _)) =
        postcard::from_io::<Header, _>((&mut input, &mut scratch)).map_err(|e| corrupt(0, e))?;
    let since = unix_ns().saturating_sub(header.saved_at);
    loop {
        let (item, _) = postcard::from_io::<Option<Saved>, _>((&mut input, &mut scratch))
            .map_err(|e| corrupt(read, e))?;
        let Some(saved) = item else {
            return Ok(Some(read));
        };
        read += 1;
        each(
            &header,
            Saved {
                age: saved.age.saturating_add(since),
                idle: saved.idle.saturating_add(since),
                ..saved
            },
        );
    }
}

/// Fills as much of `buf` as the reader has; returns how much.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use brink_conntrack::key::proto;
    use brink_conntrack::{Addr, Config, Filter, Packet, Tuple, L4};

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("brk-conns-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn table_with(n: u16) -> Table {
        let t = Table::new(Config {
            max_connections: 64,
            shards: 2,
        });
        for sport in 0..n {
            let p = Packet {
                tuple: Tuple {
                    zone: 3,
                    proto: proto::UDP,
                    src: Addr::v4([10, 0, 0, 1]),
                    dst: Addr::v4([10, 0, 0, 2]),
                    sport,
                    dport: 53,
                    v6: false,
                },
                l4: L4::Udp,
                len: 80,
            };
            t.process(&p, 0);
        }
        t
    }

    fn names() -> (Names, Names) {
        (vec![(3, "blue".into())], vec![(0, "vm1".into())])
    }

    #[test]
    fn a_saved_table_reads_back_whole() {
        let d = dir("whole");
        let path = d.join(FILE);
        let t = table_with(10);
        let (nets, ports) = names();
        assert_eq!(save(&path, &t, 0, nets.clone(), ports.clone()).unwrap(), 10);
        let mut got = Vec::new();
        let n = load(&path, |h, s| {
            assert_eq!((&h.networks, &h.ports), (&nets, &ports));
            got.push(s);
        })
        .unwrap();
        assert_eq!(n, Some(10));
        let mut sports: Vec<u16> = got.iter().map(|s| s.original.sport).collect();
        sports.sort_unstable();
        assert_eq!(sports, (0..10).collect::<Vec<_>>());
        // About 60 bytes a connection.
        assert!(fs::metadata(&path).unwrap().len() < 1_000);
        let copy = Table::new(Config::default());
        for s in &got {
            copy.import(s, 0).unwrap();
        }
        assert_eq!(copy.dump(&Filter::default(), 100).len(), 10);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn no_file_is_no_table() {
        let d = dir("none");
        assert_eq!(load(&d.join(FILE), |_, _| {}).unwrap(), None);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn foreign_old_and_cut_files_are_refused_with_the_reason() {
        let d = dir("bad");
        let path = d.join(FILE);
        let (nets, ports) = names();
        save(&path, &table_with(5), 0, nets, ports).unwrap();
        let whole = fs::read(&path).unwrap();
        let err = |bytes: &[u8]| {
            fs::write(&path, bytes).unwrap();
            load(&path, |_, _| {}).unwrap_err().to_string()
        };
        let e = err(b"{\"networks\": []}");
        assert!(
            e.contains("conntrack.bin is not a saved brink connection table"),
            "{e}"
        );
        let mut v2 = whole.clone();
        v2[8] = 2;
        let e = err(&v2);
        assert!(
            e.contains("format version 2; this brinkd reads version 1"),
            "{e}"
        );
        let e = err(&whole[..whole.len() - 30]);
        assert!(e.contains("cut short or corrupt after"), "{e}");
        assert!(err(&whole[..5]).contains("not a saved brink connection table"));
        fs::remove_dir_all(&d).unwrap();
    }
}
