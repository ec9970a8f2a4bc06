//! An S3 server for the export benchmark: s3s-fs (crates.io; `scripts/setup.sh`
//! installs it) on a free loopback port with its data in a temporary
//! directory and one bucket made through the S3 API, stopped and removed
//! when dropped.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use object_store::{aws::AmazonS3Builder, path::Path, signer::Signer};

use crate::{pipeline::unique_suffix, queue::BenchError};

const ACCESS_KEY: &str = "herald-bench-access";
const SECRET_KEY: &str = "herald-bench-secret-key";
const BUCKET: &str = "herald-bench-exports";

/// A running s3s-fs with one bucket.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    port: u16,
    root: PathBuf,
}

/// The s3s-fs binary: on `PATH`, else in Cargo's bin directory.
fn binary() -> Result<PathBuf, BenchError> {
    let cargo_bin = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin"));
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(cargo_bin)
        .map(|dir| dir.join("s3s-fs"))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            BenchError::Invalid(
                "s3s-fs is not installed: run scripts/setup.sh --tests (or pass --export-storage local)"
                    .into(),
            )
        })
}

impl S3Server {
    /// Starts s3s-fs and makes the bucket.
    pub async fn start() -> Result<Self, BenchError> {
        let root = std::env::temp_dir().join(format!("herald-bench-s3s-{}", unique_suffix()));
        std::fs::create_dir_all(&root)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(binary()?)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = Self { child, port, root };
        let begun = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if begun.elapsed() > Duration::from_secs(20) {
                return Err(BenchError::Stuck("s3s-fs start".into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.create_bucket().await?;
        Ok(server)
    }

    async fn create_bucket(&self) -> Result<(), BenchError> {
        let invalid =
            |e: &dyn std::fmt::Display| BenchError::Invalid(format!("s3s-fs bucket: {e}"));
        let client = AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .map_err(|e| invalid(&e))?;
        let url = client
            .signed_url(
                reqwest::Method::PUT,
                &Path::from(""),
                Duration::from_secs(60),
            )
            .await
            .map_err(|e| invalid(&e))?;
        let created = reqwest::Client::new()
            .put(url)
            .send()
            .await
            .map_err(|e| invalid(&e))?;
        if !created.status().is_success() {
            return Err(invalid(&created.status()));
        }
        Ok(())
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Variables that point a worker's exports at this server.
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HERALD_EXPORT_STORAGE", "s3".to_owned()),
            ("HERALD_EXPORT_S3_ENDPOINT", self.endpoint()),
            ("HERALD_EXPORT_S3_BUCKET", BUCKET.to_owned()),
            ("HERALD_EXPORT_S3_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("HERALD_EXPORT_S3_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
