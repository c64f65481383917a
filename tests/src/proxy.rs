//! A TCP proxy that a test can cut, to make a real server unreachable without stopping it.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use tokio::net::{TcpListener, TcpStream};

pub struct TcpProxy {
    /// `127.0.0.1:PORT` to connect to instead of the target.
    pub address: String,
    down: Arc<AtomicBool>,
    /// Bumped on every cut; connections of an older generation close themselves.
    generation: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("addr").to_string();
        let down = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (down, generation) = (down.clone(), generation.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if down.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let target = target.clone();
                    let generation = generation.clone();
                    let born = generation.load(Ordering::SeqCst);
                    tokio::spawn(async move {
                        let Ok(mut upstream) = TcpStream::connect(&target).await else {
                            return;
                        };
                        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
                        let cut = async {
                            while generation.load(Ordering::SeqCst) == born {
                                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            }
                        };
                        tokio::select! { _ = copy => {}, _ = cut => {} }
                    });
                }
            }
        });
        Self {
            address,
            down,
            generation,
            task,
        }
    }

    /// Closes every open connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
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
