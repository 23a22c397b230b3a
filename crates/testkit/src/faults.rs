//! Real faults to put a node through: a small disk of its own that can be filled ([`Tmpfs`])
//! and a TCP link to a server that can be cut and restored ([`Proxy`]).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// A tmpfs of a bounded size mounted on a fresh directory, unmounted when dropped.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes`, or `None` (the test skips) when this process may not mount
    /// one — except under `CI=true`, where it panics.
    pub fn mount(bytes: u64) -> Option<Self> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("random bytes");
        let path = std::env::temp_dir().join(format!(
            "pipewright-tmpfs-{:016x}",
            u64::from_le_bytes(random)
        ));
        std::fs::create_dir(&path).expect("a directory to mount on");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&path)
            .output();
        let why = match mounted {
            Ok(out) if out.status.success() => return Some(Self { path }),
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        };
        let _ = std::fs::remove_dir(&path);
        super::required(&format!("mounting a tmpfs ({why})"), false);
        None
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a file until the filesystem takes no byte more; returns its path (removing it
    /// frees the space again).
    pub fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).expect("the filler file");
        let mut chunk = 1 << 16;
        let zeros = vec![0u8; chunk];
        while chunk > 0 {
            match file.write(&zeros[..chunk]) {
                Ok(0) => chunk /= 2,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => chunk /= 2, // ENOSPC
                Err(e) => panic!("filling {}: {e}", self.path.display()),
            }
        }
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: files a server still holds open do not keep the mount busy.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// A TCP proxy on a local port in front of `upstream`. [`Proxy::cut`] closes every connection
/// through it and refuses new ones (the port is closed), as a server that went away;
/// [`Proxy::restore`] opens the same port again.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    serving: Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = listen("127.0.0.1:0".parse().expect("an address"));
        let addr = listener.local_addr().expect("the proxy's address");
        Self {
            addr,
            upstream,
            serving: Mutex::new(Some(tokio::spawn(serve(listener, upstream)))),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every connection and the port.
    pub fn cut(&self) {
        if let Some(task) = self.serving.lock().expect("proxy state").take() {
            // Aborting the task drops the listener and the set of connections, closing each.
            task.abort();
        }
    }

    /// Opens the port again.
    pub fn restore(&self) {
        let mut serving = self.serving.lock().expect("proxy state");
        if serving.is_none() {
            *serving = Some(tokio::spawn(serve(listen(self.addr), self.upstream)));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// A listener on `addr` that can take a port back at once after it was closed.
fn listen(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.bind(addr).expect("the proxy's port");
    socket.listen(128).expect("listening")
}

async fn serve(listener: TcpListener, upstream: SocketAddr) {
    let mut links = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut client, _)) = accepted else { continue };
                links.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
            Some(_) = links.join_next(), if !links.is_empty() => {}
        }
    }
}
