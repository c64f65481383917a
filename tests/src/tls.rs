//! TLS for the exporter tests: a throwaway PKI made at test time (nothing committed) and a
//! TLS front that terminates TLS - optionally requiring a client certificate - and pipes
//! the plain bytes to a plain receiver such as [`crate::otlp::OtlpReceiver`].

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::WebPkiClientVerifier,
};
use tempfile::TempDir;

/// A CA, a server certificate for `127.0.0.1`/`localhost` and a client certificate, as
/// PEM files in a temporary directory that lives as long as this value.
pub struct Pki {
    dir: TempDir,
    ca_der: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: String,
}

impl Pki {
    pub fn generate() -> Self {
        Self::generate_for(&["127.0.0.1", "localhost"])
    }

    /// A PKI whose server certificate names only `names` (for name-mismatch checks).
    pub fn generate_for(names: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Each PKI's CA has a name of its own, as two real CAs do.
        static SERIAL: AtomicUsize = AtomicUsize::new(0);
        let serial = SERIAL.fetch_add(1, Ordering::SeqCst);
        ca_params.distinguished_name.push(
            DnType::CommonName,
            format!("otel-lab test CA {} {serial}", std::process::id()),
        );
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");

        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let server_key = KeyPair::generate().expect("server key");
        let server = CertificateParams::new(names)
            .expect("server params")
            .signed_by(&server_key, &ca)
            .expect("server certificate");

        let client_key = KeyPair::generate().expect("client key");
        let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        client_params
            .distinguished_name
            .push(DnType::CommonName, "todo-api");
        let client = client_params
            .signed_by(&client_key, &ca)
            .expect("client certificate");

        let write = |name: &str, contents: &str| {
            std::fs::write(dir.path().join(name), contents).expect("write PEM");
        };
        write("ca.pem", &ca.pem());
        write("server.pem", &server.pem());
        write("server-key.pem", &server_key.serialize_pem());
        write("client.pem", &client.pem());
        write("client-key.pem", &client_key.serialize_pem());
        Self {
            ca_der: ca.der().clone(),
            server_chain: vec![server.der().clone()],
            server_key: server_key.serialize_pem(),
            dir,
        }
    }

    /// The path of one of `ca.pem`, `server.pem`, `server-key.pem`, `client.pem`,
    /// `client-key.pem`.
    pub fn path(&self, name: &str) -> String {
        let path: PathBuf = self.dir.path().join(name);
        path.to_string_lossy().into_owned()
    }

    /// A rustls server configuration with this PKI's server certificate; with
    /// `require_client_cert`, only clients with a certificate from this CA get in.
    pub fn server_config(&self, require_client_cert: bool) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = if require_client_cert {
            let mut roots = RootCertStore::empty();
            roots.add(self.ca_der.clone()).expect("CA root");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::from_pem_slice(self.server_key.as_bytes()).expect("server key");
        let mut config = builder
            .with_single_cert(self.server_chain.clone(), key)
            .expect("server certificate");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// Terminates TLS on a random loopback port and forwards each connection to `target`.
pub struct TlsFront {
    /// `127.0.0.1:PORT`
    pub address: String,
    handshakes: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsFront {
    /// `target` is `host:port` or an `http://host:port` endpoint.
    pub async fn start(config: Arc<ServerConfig>, target: &str) -> Self {
        let target = target.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind TLS front");
        let address = listener.local_addr().expect("address").to_string();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (counted, failures) = (handshakes.clone(), failed.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, target) = (acceptor.clone(), target.clone());
                let (counted, failures) = (counted.clone(), failures.clone());
                tokio::spawn(async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        failures.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    if let Ok(mut plain) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    }
                });
            }
        });
        Self {
            address,
            handshakes,
            failed,
            task,
        }
    }

    /// `https://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.address)
    }

    /// TLS handshakes started so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// TLS handshakes that failed so far.
    pub fn failed_handshakes(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }
}
