//! `[trace]`: the optional export of Herald's trace spans over OTLP.
//!
//! Off unless `otlp_endpoint` is set. The W3C trace context travels in
//! the jobs and the logs carry its ids either way; this section only
//! decides whether the spans also go to a collector (see
//! [`crate::telemetry`]).

use super::setting::{define_settings, Rule, Values};
use super::ConfigError;

define_settings! {
    section "trace";
    OTLP_ENDPOINT: "otlp_endpoint" = "", Rule::Form("empty, or an http:// URL"), "OTLP/HTTP collector base URL; spans go to its /v1/traces as protobuf; empty: no export";
    SAMPLE_RATIO: "sample_ratio" = "1", Rule::Fraction, "fraction of traces exported, decided from the trace id alike in every process; a caller's unsampled traceparent is never exported";
    SERVICE_NAME: "service_name" = "herald", Rule::NonEmpty, "the exported spans' service.name";
}

/// `[trace]`, checked: `None` when no endpoint is set.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceExportSettings {
    /// Where spans are posted: the endpoint with `/v1/traces` appended.
    pub traces_url: reqwest::Url,
    /// Fraction of traces exported, in `(0, 1]`.
    pub sample_ratio: f64,
    /// The resource's `service.name`.
    pub service_name: String,
}

/// Reads and checks `[trace]`.
pub(super) fn read(values: &Values) -> Result<Option<TraceExportSettings>, ConfigError> {
    let endpoint = values.text(&OTLP_ENDPOINT)?;
    let sample_ratio = values.fraction(&SAMPLE_RATIO)?;
    let service_name = values.text(&SERVICE_NAME)?;
    if endpoint.trim().is_empty() {
        return Ok(None);
    }
    let traces_url =
        traces_url(&endpoint).map_err(|reason| ConfigError::invalid(&OTLP_ENDPOINT, reason))?;
    Ok(Some(TraceExportSettings {
        traces_url,
        sample_ratio,
        service_name,
    }))
}

/// The OTLP/HTTP traces URL of the collector at `endpoint`: plain HTTP
/// only (Herald's exporter has no TLS; a collector agent on the host or
/// beside the pod forwards over TLS).
fn traces_url(endpoint: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(endpoint.trim())
        .ok()
        .filter(|u| u.host().is_some())
        .ok_or_else(|| format!("'{endpoint}' is not a URL"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "'{endpoint}' is not an http:// URL; the exporter speaks plain OTLP/HTTP, so point it at a collector agent on the host or beside the pod"
        ));
    }
    if url.query().is_some() {
        return Err(format!("'{endpoint}' has a query; give the base URL"));
    }
    let base = url.as_str().trim_end_matches('/');
    reqwest::Url::parse(&format!("{base}/v1/traces")).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::traces_url;
    use crate::config::{tests::vars, Settings};

    #[test]
    fn off_by_default() {
        let settings = Settings::load_from(&vars(&[])).expect("defaults load");
        assert_eq!(settings.trace_export, None);
    }

    #[test]
    fn the_endpoint_gains_the_traces_path() {
        for base in ["http://collector:4318", "http://collector:4318/"] {
            assert_eq!(
                traces_url(base).expect("valid").as_str(),
                "http://collector:4318/v1/traces"
            );
        }
        assert_eq!(
            traces_url("http://10.0.0.1:4318/otlp")
                .expect("valid")
                .as_str(),
            "http://10.0.0.1:4318/otlp/v1/traces"
        );
    }

    #[test]
    fn https_a_bare_word_and_a_query_are_refused_with_the_reason() {
        let https = traces_url("https://collector:4318").expect_err("no TLS");
        assert!(https.contains("plain OTLP/HTTP"), "{https}");
        assert!(traces_url("collector:4318").is_err());
        assert!(traces_url("http://collector:4318/?a=b").is_err());
        let err = Settings::load_from(&vars(&[(
            "HERALD_TRACE_OTLP_ENDPOINT",
            "https://collector:4318",
        )]))
        .expect_err("refused");
        assert!(err.to_string().contains("trace.otlp_endpoint"), "{err}");
    }

    #[test]
    fn an_endpoint_turns_the_export_on_with_its_ratio_and_name() {
        let settings = Settings::load_from(&vars(&[
            ("HERALD_TRACE_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("HERALD_TRACE_SAMPLE_RATIO", "0.25"),
            ("HERALD_TRACE_SERVICE_NAME", "herald-eu"),
        ]))
        .expect("valid");
        let export = settings.trace_export.expect("on");
        assert_eq!(export.sample_ratio, 0.25);
        assert_eq!(export.service_name, "herald-eu");
        for ratio in ["0", "1.5", "half"] {
            assert!(
                Settings::load_from(&vars(&[("HERALD_TRACE_SAMPLE_RATIO", ratio)])).is_err(),
                "{ratio}"
            );
        }
    }
}
