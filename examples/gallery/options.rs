//! The `gallery serve` options that set the server's access rules and limits (flattened into the
//! `serve` sub-command).

use std::time::Duration;

use anyhow::Context;

use super::guard::AccessToken;
use super::limits::parse_bytes;
use super::server::Settings;

/// Access and limits of `gallery serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeOptions {
    /// Access token required on every API and image request (16 to 256 characters of
    /// A-Z a-z 0-9 - _ . ~). Without it, a non-loopback --addr gets a random one, printed at start.
    #[arg(long, env = "GALLERY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A host name the server may be reached by, besides localhost and loopback addresses
    /// (repeatable), e.g. the machine's name on the network or the name a reverse proxy forwards.
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,
    /// Largest upload (e.g. 20M).
    #[arg(long, value_name = "BYTES", default_value = "20M", value_parser = bytes_arg)]
    pub max_upload: u64,
    /// Uploads handled at once; more get 503 before their body is read.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub uploads_in_flight: u16,
    /// New pictures the page may add per quota window.
    #[arg(long, default_value_t = 500)]
    pub quota_count: u64,
    /// Bytes of new pictures the page may add per quota window (e.g. 1G).
    #[arg(long, value_name = "BYTES", default_value = "1G", value_parser = bytes_arg)]
    pub quota_bytes: u64,
    /// The quota window in seconds (sliding).
    #[arg(long, value_name = "SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=366 * 86_400))]
    pub quota_window: u64,
    /// Seconds allowed for a request head (also how long an idle connection stays open).
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,
    /// Seconds allowed for a request body.
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout: u64,
}

fn bytes_arg(s: &str) -> Result<u64, String> {
    let n = parse_bytes(s)?;
    if n == 0 || n > 1 << 40 {
        return Err(format!("`{s}`: must be between 1 byte and 1T"));
    }
    Ok(n)
}

/// The settings of these options, and the text of the token when one was generated (to show).
#[derive(Debug)]
pub struct Configured {
    /// The server's settings.
    pub settings: Settings,
    /// A token generated because the address is not loopback and none was given.
    pub generated_token: Option<String>,
}

impl ServeOptions {
    /// The settings for a server that is `exposed` (listening on a non-loopback address).
    pub fn configure(&self, exposed: bool) -> anyhow::Result<Configured> {
        let mut settings = Settings::default();
        let mut generated_token = None;
        settings.access.token = match (&self.token, exposed) {
            (Some(t), _) => Some(AccessToken::new(t).context("--token / GALLERY_TOKEN")?),
            (None, true) => {
                let (token, text) =
                    AccessToken::generate().context("cannot generate an access token")?;
                generated_token = Some(text);
                Some(token)
            }
            (None, false) => None,
        };
        settings.access.allowed_hosts = self.allow_hosts.clone();
        settings.max_upload = usize::try_from(self.max_upload).context("--max-upload")?;
        settings.max_uploads_in_flight = usize::from(self.uploads_in_flight);
        settings.quota.max_count = self.quota_count;
        settings.quota.max_bytes = self.quota_bytes;
        settings.quota.window = Duration::from_secs(self.quota_window);
        settings.timeouts.header_read = Duration::from_secs(self.header_timeout);
        settings.timeouts.body_read = Duration::from_secs(self.body_timeout);
        Ok(Configured {
            settings,
            generated_token,
        })
    }
}
