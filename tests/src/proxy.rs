//! A TCP proxy that a test can cut, to make a real server unreachable without stopping it.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub struct TcpProxy {
    /// `127.0.0.1:PORT` to connect to instead of the target.
    pub address: String,
    down: Arc<AtomicBool>,
    /// Bumped on every cut; open connections close when it changes.
    cuts: watch::Sender<u64>,
    open: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("addr").to_string();
        let down = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicUsize::new(0));
        let (cuts, _) = watch::channel(0);
        let task = tokio::spawn({
            let (down, open, cuts) = (down.clone(), open.clone(), cuts.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if down.load(Ordering::SeqCst) {
                        continue; // dropping the socket refuses the connection
                    }
                    let target = target.clone();
                    let mut cut = cuts.subscribe();
                    let open = open.clone();
                    open.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        if let Ok(mut upstream) = TcpStream::connect(&target).await {
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                                _ = cut.changed() => {}
                            }
                        }
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            }
        });
        Self {
            address,
            down,
            cuts,
            open,
            task,
        }
    }

    /// Closes every open connection and refuses new ones until [`TcpProxy::restore`];
    /// returns once no connection is left.
    pub async fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cuts.send_modify(|generation| *generation += 1);
        while self.open.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
