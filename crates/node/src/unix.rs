//! Unix sockets at paths of any length. `bind(2)` takes at most 107 bytes of path
//! (`sun_path`), and a node's spool may sit deep enough that `work/<run>/proxy/proxy.sock` is
//! longer: every run would then fail before its container starts. A longer path is bound through
//! the directory opened by the node: `/proc/self/fd/<fd>/<name>` names the same place in a few
//! bytes, and the socket file is made in the real directory.

use std::io;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

/// The longest path `bind(2)` takes on Linux (`sizeof(sun_path)` minus its terminating NUL).
const SUN_PATH_MAX: usize = 107;

/// Binds a Unix listener at `path`, however long.
pub fn bind(path: &Path) -> io::Result<tokio::net::UnixListener> {
    if path.as_os_str().len() <= SUN_PATH_MAX {
        return tokio::net::UnixListener::bind(path);
    }
    let (dir, name) = split(path)?;
    // Held open until the bind is done: the short name resolves through it.
    let dir = std::fs::File::open(dir)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    let listener = tokio::net::UnixListener::bind(&short);
    drop(dir);
    listener
}

fn split(path: &Path) -> io::Result<(&Path, &std::ffi::OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) if name.len() <= SUN_PATH_MAX - 30 => Ok((dir, name)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} cannot be a socket: its file name must be under {} bytes",
                path.display(),
                SUN_PATH_MAX - 30
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A socket 200 bytes deep is bound, made in the real directory, and answers a client that
    /// reaches it the same way.
    #[tokio::test]
    async fn a_socket_deeper_than_sun_path_is_bound_and_answers() {
        let top = tempfile::tempdir().unwrap();
        let mut dir = top.path().to_path_buf();
        while dir.as_os_str().len() < 200 {
            dir.push("a-rather-long-folder-name");
        }
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("proxy.sock");
        assert!(
            tokio::net::UnixListener::bind(&path).is_err(),
            "the kernel refuses it directly"
        );
        let listener = bind(&path).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
        let served = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"pong").await.unwrap();
        });
        let d = std::fs::File::open(&dir).unwrap();
        let short = format!("/proc/self/fd/{}/proxy.sock", d.as_raw_fd());
        let mut c = tokio::net::UnixStream::connect(short).await.unwrap();
        let mut got = [0u8; 4];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        served.await.unwrap();
        // A short path is bound as it is.
        let short_path = top.path().join("s.sock");
        drop(bind(&short_path).unwrap());
        assert!(short_path.exists());
    }
}
