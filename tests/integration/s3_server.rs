//! A real S3 server for the tests: `s3s-fs` (crates.io, not Herald's code),
//! one per test, on a free loopback port with its data in a temporary
//! directory, both removed when the test ends. `scripts/setup.sh --tests` installs
//! the binary; without it the tests fail and say so.
//!
//! The bucket is made through the S3 API (a presigned `PUT /bucket`).
//! s3s-fs answers `ListMultipartUploads` with NotImplemented, so
//! [`S3Server::pending_uploads`] counts what it keeps on disk for an upload
//! in progress: its `.upload-<id>.json` record and `.upload_id-<id>.part-N`
//! parts, which completing or aborting the upload removes.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use futures::TryStreamExt;
use object_store::{
    aws::{AmazonS3, AmazonS3Builder},
    path::Path,
    signer::Signer,
    ObjectStore,
};

use crate::helpers::{installed_binary, wait_for_listener};

/// The credentials the server accepts.
pub const ACCESS_KEY: &str = "herald-test-access";
pub const SECRET_KEY: &str = "herald-test-secret-key";
pub const BUCKET: &str = "herald-exports";
pub const PREFIX: &str = "exports";

/// The s3s-fs binary: `HERALD_TEST_S3S_FS`, else on `PATH`, else in
/// Cargo's bin directory.
fn binary() -> PathBuf {
    installed_binary("HERALD_TEST_S3S_FS", "s3s-fs").unwrap_or_else(|| {
        panic!(
            "s3s-fs is not installed (nor named by HERALD_TEST_S3S_FS): \
                 run scripts/setup.sh --tests, which installs it with cargo install"
        )
    })
}

/// A running s3s-fs with one bucket.
pub struct S3Server {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its data directory.
    pub root: PathBuf,
}

impl S3Server {
    /// Starts a server with an empty bucket [`BUCKET`].
    pub async fn start() -> Self {
        let root = std::env::temp_dir().join(format!(
            "herald-s3s-{}",
            mongodb::bson::oid::ObjectId::new()
        ));
        std::fs::create_dir_all(&root).expect("s3s-fs data directory");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self {
            child: None,
            port,
            root,
        };
        server.run().await;
        let url = server
            .client(BUCKET)
            .signed_url(
                reqwest::Method::PUT,
                &Path::from(""),
                Duration::from_secs(60),
            )
            .await
            .expect("presign CreateBucket");
        let created = reqwest::Client::new()
            .put(url)
            .send()
            .await
            .expect("s3s-fs answers");
        assert!(
            created.status().is_success(),
            "CreateBucket: {}",
            created.status()
        );
        server
    }

    async fn run(&mut self) {
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        self.child = Some(child);
        wait_for_listener("s3s-fs", self.port, Duration::from_secs(20)).await;
    }

    /// Kills the server (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data.
    pub async fn restart(&mut self) {
        self.stop();
        self.run().await;
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `HERALD_EXPORT_*` variables for this server.
    pub fn vars(&self) -> Vec<(String, String)> {
        [
            ("HERALD_EXPORT_STORAGE", "s3".to_owned()),
            ("HERALD_EXPORT_S3_ENDPOINT", self.endpoint()),
            ("HERALD_EXPORT_S3_BUCKET", BUCKET.to_owned()),
            ("HERALD_EXPORT_S3_REGION", "us-east-1".to_owned()),
            ("HERALD_EXPORT_S3_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("HERALD_EXPORT_S3_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("HERALD_EXPORT_S3_PREFIX", PREFIX.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// A client of `bucket` with the right credentials.
    pub fn client(&self, bucket: &str) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .expect("S3 client")
    }

    /// Every object in [`BUCKET`] (ListObjectsV2): key and size.
    pub async fn objects(&self) -> Vec<(String, u64)> {
        let mut objects: Vec<(String, u64)> = self
            .client(BUCKET)
            .list(None)
            .map_ok(|meta| (meta.location.to_string(), meta.size))
            .try_collect()
            .await
            .expect("ListObjectsV2");
        objects.sort();
        objects
    }

    /// The bytes of object `key`.
    pub async fn object(&self, key: &str) -> Vec<u8> {
        use object_store::ObjectStoreExt;
        self.client(BUCKET)
            .get(&Path::from(key))
            .await
            .expect("GetObject")
            .bytes()
            .await
            .expect("object body")
            .to_vec()
    }

    /// Files s3s-fs keeps for multipart uploads in progress: records and
    /// parts.
    pub fn pending_uploads(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.root)
            .expect("s3s-fs data directory")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".upload"))
            .collect();
        names.sort();
        names
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A test environment on `server`'s bucket, with `extra` variables too.
pub async fn s3_env(server: &S3Server, extra: &[(&str, &str)]) -> crate::helpers::TestEnv {
    let mut vars = server.vars();
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    crate::helpers::env_with(&pairs).await
}
