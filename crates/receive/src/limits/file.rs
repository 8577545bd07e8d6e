//! The limits file: Thanos' YAML (`write.global`, `write.default`, `write.tenants`), parsed
//! strictly as Thanos parses it (unknown keys and wrong types refused, naming them), resolved
//! into the limits of each tenant (a tenant's missing value inherits the default; 0 and
//! negative values mean unlimited).
//!
//! Beside Thanos' keys, `default` and each tenant take ringest's own, named as Mimir names
//! them: `max_label_names_per_series`, `max_label_name_length`, `max_label_value_length`,
//! `ingestion_rate` (samples per second across the ring) and `ingestion_burst_size`. (Thanos
//! refuses a file that uses them.)

use std::collections::HashMap;

use serde::Deserialize;

/// Thanos' default `meta_monitoring_limit_query`.
pub const DEFAULT_META_QUERY: &str = "sum(prometheus_tsdb_head_series) by (tenant)";

/// Why a limits file is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitsFileError {
    /// Not YAML, an unknown key, or a value of the wrong type.
    #[error("parsing config YAML file: {0}")]
    Parse(String),
    /// `ingestion_rate` without a burst that can hold one sample, or not a finite number.
    #[error(
        "{scope}: ingestion_rate {rate} needs a finite rate of at least 0 and an ingestion_burst_size of at least 1"
    )]
    Rate {
        /// `default` or `tenant <name>`.
        scope: String,
        /// The rate.
        rate: f64,
    },
    /// `meta_monitoring_url` is not an absolute URL.
    #[error("{0:?} is not a valid meta-monitoring URL (it needs a scheme and a host)")]
    MetaMonitoringUrl(String),
    /// A scheme other than http or https.
    #[error("meta-monitoring URL {0:?}: only http and https are supported")]
    MetaMonitoringScheme(String),
    /// `meta_monitoring_http_client` that ringest cannot use.
    #[error(transparent)]
    MetaMonitoringClient(#[from] super::client::ClientConfigError),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Root {
    #[serde(default)]
    write: Option<Write>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Write {
    #[serde(default)]
    global: Option<Global>,
    #[serde(default)]
    default: Option<Scope>,
    #[serde(default)]
    tenants: Option<HashMap<String, Option<Scope>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Global {
    #[serde(default)]
    max_concurrency: Option<i64>,
    #[serde(default)]
    meta_monitoring_url: Option<String>,
    #[serde(default)]
    meta_monitoring_http_client: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    meta_monitoring_limit_query: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    #[serde(default)]
    size_bytes_limit: Option<i64>,
    #[serde(default)]
    series_limit: Option<i64>,
    #[serde(default)]
    samples_limit: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
/// `write.default`, or one tenant of `write.tenants`.
struct Scope {
    #[serde(default)]
    request: Option<Request>,
    #[serde(default)]
    head_series_limit: Option<u64>,
    #[serde(default)]
    max_label_names_per_series: Option<u64>,
    #[serde(default)]
    max_label_name_length: Option<u64>,
    #[serde(default)]
    max_label_value_length: Option<u64>,
    #[serde(default)]
    ingestion_rate: Option<f64>,
    #[serde(default)]
    ingestion_burst_size: Option<u64>,
}

/// One request's limits (0: unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestLimits {
    /// `size_bytes_limit`: the body, compressed and decompressed.
    pub size_bytes: u64,
    /// `series_limit`.
    pub series: u64,
    /// `samples_limit`.
    pub samples: u64,
}

/// Per-series label limits (0: unlimited), ringest's keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelLimits {
    /// `max_label_names_per_series`.
    pub names_per_series: u64,
    /// `max_label_name_length`, in bytes.
    pub name_length: u64,
    /// `max_label_value_length`, in bytes.
    pub value_length: u64,
}

/// An ingestion rate limit, ringest's keys.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    /// `ingestion_rate`: samples per second across the ring.
    pub per_second: f64,
    /// `ingestion_burst_size`: the samples one node may take at once.
    pub burst: u64,
}

/// The limits of one tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TenantLimits {
    /// Per request.
    pub request: RequestLimits,
    /// `head_series_limit`: the tenant's head series across the ring (0: unlimited).
    pub head_series: u64,
    /// Per series.
    pub labels: LabelLimits,
    /// `None`: unlimited.
    pub rate: Option<Rate>,
}

/// Where head series counts come from when `meta_monitoring_url` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaMonitoring {
    /// The Prometheus query API's base URL.
    pub url: String,
    /// The instant query giving head series by `tenant`.
    pub query: String,
    /// `meta_monitoring_http_client`.
    pub client: super::client::MetaClient,
}

/// A parsed limits file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitsFile {
    /// `write.global.max_concurrency` (0: no gate).
    pub max_concurrency: usize,
    /// `write.default`.
    pub default: TenantLimits,
    /// `write.tenants`, each resolved over the default.
    pub tenants: HashMap<String, TenantLimits>,
    /// `write.global.meta_monitoring_*`.
    pub meta_monitoring: Option<MetaMonitoring>,
}

/// A scope's rate limit: its own keys over `inherited` (0 or absent rate: unlimited).
fn rate(
    scope: &str,
    per_second: Option<f64>,
    burst: Option<u64>,
    inherited: Option<Rate>,
) -> Result<Option<Rate>, LimitsFileError> {
    let base = inherited.unwrap_or_default();
    let per_second = per_second.unwrap_or(base.per_second);
    let burst = burst.unwrap_or(base.burst);
    if !per_second.is_finite() || per_second < 0.0 {
        return Err(LimitsFileError::Rate { scope: scope.to_string(), rate: per_second });
    }
    if per_second == 0.0 {
        return Ok(None);
    }
    if burst == 0 {
        return Err(LimitsFileError::Rate { scope: scope.to_string(), rate: per_second });
    }
    Ok(Some(Rate { per_second, burst }))
}

/// A limit as the file gives it: absent or not positive is unlimited.
fn limit(v: Option<i64>) -> Option<u64> {
    v.map(|n| n.max(0) as u64)
}

impl LimitsFile {
    /// Parses the file's content.
    pub fn parse(yaml: &str) -> Result<LimitsFile, LimitsFileError> {
        let root: Root = if yaml.trim().is_empty() {
            Root::default()
        } else {
            serde_yaml_ng::from_str::<Option<Root>>(yaml)
                .map_err(|e| LimitsFileError::Parse(e.to_string()))?
                .unwrap_or_default()
        };
        let write = root.write.unwrap_or_default();
        let global = write.global.unwrap_or_default();
        let default = write.default.unwrap_or_default();
        let default_request = default.request.unwrap_or_default();
        let default_rate = rate("default", default.ingestion_rate, default.ingestion_burst_size, None)?;
        let default = TenantLimits {
            request: RequestLimits {
                size_bytes: limit(default_request.size_bytes_limit).unwrap_or(0),
                series: limit(default_request.series_limit).unwrap_or(0),
                samples: limit(default_request.samples_limit).unwrap_or(0),
            },
            head_series: default.head_series_limit.unwrap_or(0),
            labels: LabelLimits {
                names_per_series: default.max_label_names_per_series.unwrap_or(0),
                name_length: default.max_label_name_length.unwrap_or(0),
                value_length: default.max_label_value_length.unwrap_or(0),
            },
            rate: default_rate,
        };
        let mut tenants = HashMap::new();
        for (name, t) in write.tenants.unwrap_or_default() {
            let t = t.unwrap_or_default();
            let request = match t.request {
                None => default.request,
                Some(r) => RequestLimits {
                    size_bytes: limit(r.size_bytes_limit).unwrap_or(default.request.size_bytes),
                    series: limit(r.series_limit).unwrap_or(default.request.series),
                    samples: limit(r.samples_limit).unwrap_or(default.request.samples),
                },
            };
            let d = &default.labels;
            let labels = LabelLimits {
                names_per_series: t.max_label_names_per_series.unwrap_or(d.names_per_series),
                name_length: t.max_label_name_length.unwrap_or(d.name_length),
                value_length: t.max_label_value_length.unwrap_or(d.value_length),
            };
            let rate = rate(&format!("tenant {name:?}"), t.ingestion_rate, t.ingestion_burst_size, default.rate)?;
            let head_series = t.head_series_limit.unwrap_or(default.head_series);
            tenants.insert(name, TenantLimits { request, head_series, labels, rate });
        }
        let meta_monitoring = match global.meta_monitoring_url.filter(|u| !u.is_empty()) {
            None => None,
            Some(url) => {
                let (scheme, rest) =
                    url.split_once("://").ok_or_else(|| LimitsFileError::MetaMonitoringUrl(url.clone()))?;
                if rest.split('/').next().unwrap_or("").is_empty() {
                    return Err(LimitsFileError::MetaMonitoringUrl(url));
                }
                if scheme != "http" && scheme != "https" {
                    return Err(LimitsFileError::MetaMonitoringScheme(url));
                }
                let client = super::client::MetaClient::parse(global.meta_monitoring_http_client)?;
                let query = global.meta_monitoring_limit_query.filter(|q| !q.is_empty());
                Some(MetaMonitoring { url, query: query.unwrap_or_else(|| DEFAULT_META_QUERY.to_string()), client })
            }
        };
        Ok(LimitsFile {
            max_concurrency: global.max_concurrency.unwrap_or(0).max(0) as usize,
            default,
            tenants,
            meta_monitoring,
        })
    }

    /// The limits of `tenant`.
    pub fn of(&self, tenant: &str) -> &TenantLimits {
        self.tenants.get(tenant).unwrap_or(&self.default)
    }

    /// Whether any tenant has a head series limit.
    pub fn limits_head_series(&self) -> bool {
        self.default.head_series > 0 || self.tenants.values().any(|t| t.head_series > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thanos_docs_example() {
        let f = LimitsFile::parse(
            r#"
write:
  global:
    max_concurrency: 30
  default:
    request:
      size_bytes_limit: 1024
      series_limit: 1000
      samples_limit: 10
    head_series_limit: 1000
  tenants:
    acme:
      request:
        size_bytes_limit: 0
        series_limit: 0
        samples_limit: 0
      head_series_limit: 2000
    ajax:
      request:
        series_limit: 50000
        samples_limit: 500
    quiet:
"#,
        )
        .unwrap();
        assert_eq!(f.max_concurrency, 30);
        let d = TenantLimits {
            request: RequestLimits { size_bytes: 1024, series: 1000, samples: 10 },
            head_series: 1000,
            ..Default::default()
        };
        assert_eq!(*f.of("someone"), d);
        assert_eq!(*f.of("acme"), TenantLimits { head_series: 2000, ..Default::default() });
        let ajax = TenantLimits {
            request: RequestLimits { size_bytes: 1024, series: 50000, samples: 500 },
            head_series: 1000,
            ..Default::default()
        };
        assert_eq!(*f.of("ajax"), ajax);
        assert_eq!(*f.of("quiet"), d);
        assert!(f.limits_head_series());
        assert_eq!(f.meta_monitoring, None);
    }

    #[test]
    fn empty_and_null_sections_mean_no_limits() {
        for yaml in ["", "write:", "write:\n  global:\n  default:\n  tenants:\n", "{}"] {
            let f = LimitsFile::parse(yaml).unwrap_or_else(|e| panic!("{yaml:?}: {e}"));
            assert_eq!(f, LimitsFile::default(), "{yaml:?}");
            assert!(!f.limits_head_series());
        }
        let f = LimitsFile::parse("write:\n  default:\n    request:\n      series_limit: -5\n").unwrap();
        assert_eq!(f.default.request.series, 0, "negative is unlimited, as Thanos' `<= 0`");
    }

    #[test]
    fn strict_as_thanos() {
        for (yaml, want) in [
            ("write:\n  global:\n    max_concurency: 3\n", "max_concurency"),
            ("writes: {}\n", "writes"),
            ("write:\n  default:\n    request:\n      series_limit: lots\n", "series_limit"),
            ("write:\n  default:\n    head_series_limit: -1\n", "head_series_limit"),
            ("write:\n  tenants:\n    a:\n      requests: {}\n", "requests"),
            ("write: [\n", "parsing config YAML file"),
        ] {
            let e = LimitsFile::parse(yaml).unwrap_err().to_string();
            assert!(e.contains(want), "{yaml:?}: {e}");
        }
    }

    #[test]
    fn ringest_keys_inherit_as_thanos_keys_do() {
        let f = LimitsFile::parse(
            "write:\n  default:\n    max_label_names_per_series: 30\n    max_label_value_length: 2048\n    \
             ingestion_rate: 1000\n    ingestion_burst_size: 5000\n  tenants:\n    a:\n      \
             max_label_names_per_series: 10\n      ingestion_rate: 0\n    b:\n      ingestion_burst_size: 100\n",
        )
        .unwrap();
        let labels = LabelLimits { names_per_series: 30, name_length: 0, value_length: 2048 };
        assert_eq!(f.of("x").labels, labels);
        assert_eq!(f.of("x").rate, Some(Rate { per_second: 1000.0, burst: 5000 }));
        assert_eq!(f.of("a").labels, LabelLimits { names_per_series: 10, ..labels });
        assert_eq!(f.of("a").rate, None, "0: unlimited");
        assert_eq!(f.of("b").rate, Some(Rate { per_second: 1000.0, burst: 100 }));
        for bad in [
            "ingestion_rate: 10",
            "ingestion_rate: -1\n    ingestion_burst_size: 1",
            "ingestion_rate: .nan\n    ingestion_burst_size: 1",
        ] {
            let e = LimitsFile::parse(&format!("write:\n  default:\n    {bad}\n")).unwrap_err();
            assert!(matches!(e, LimitsFileError::Rate { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn meta_monitoring() {
        let f = LimitsFile::parse("write:\n  global:\n    meta_monitoring_url: http://prom:9090\n").unwrap();
        let want = MetaMonitoring {
            url: "http://prom:9090".into(),
            query: DEFAULT_META_QUERY.into(),
            client: Default::default(),
        };
        assert_eq!(f.meta_monitoring, Some(want));
        let f = LimitsFile::parse(
            "write:\n  global:\n    meta_monitoring_url: https://prom\n    meta_monitoring_limit_query: sum(x) by (tenant)\n",
        )
        .unwrap();
        assert_eq!(f.meta_monitoring.unwrap().query, "sum(x) by (tenant)");
        for (url, want) in [("prom:9090", "not a valid"), ("http://", "not a valid"), ("ftp://prom", "only http")] {
            let yaml = format!("write:\n  global:\n    meta_monitoring_url: {url:?}\n");
            let e = LimitsFile::parse(&yaml).unwrap_err().to_string();
            assert!(e.contains(want), "{url}: {e}");
        }
        let client = |c: &str| {
            let yaml =
                format!("write:\n  global:\n    meta_monitoring_url: https://p\n    meta_monitoring_http_client:\n{c}");
            LimitsFile::parse(&yaml).map(|f| f.meta_monitoring.unwrap().client)
        };
        let c = client(
            "      basic_auth: {username: a, password_file: /p}\n      tls_config: {ca_file: /ca, server_name: prom}\n",
        )
        .unwrap();
        use super::super::client::{Auth, Secret};
        assert_eq!(
            c.auth,
            Some(Auth::Basic { username: Secret::Inline("a".into()), password: Some(Secret::File("/p".into())) })
        );
        assert_eq!((c.tls.ca.as_str(), c.tls.server_name.as_str()), ("/ca", "prom"));
        let c = client("      authorization: {credentials: t}\n").unwrap();
        assert_eq!(c.auth, Some(Auth::Header { scheme: "Bearer".into(), credentials: Secret::Inline("t".into()) }));
        for (c, want) in [
            ("      oauth2: {client_id: x}\n", "oauth2 is not supported"),
            ("      proxy_url: http://proxy\n", "proxy_url is not supported"),
            ("      basic_auth: {username: a}\n      bearer_token: t\n", "at most one of"),
            ("      basic_auth: {password: a}\n", "needs a username"),
            ("      tls_config: {ca: PEM}\n", "inline PEM"),
            ("      tls_config: {min_version: TLS11}\n", "TLS11"),
            ("      basic_auth: {username: a, pasword: b}\n", "pasword"),
        ] {
            let e = client(c).unwrap_err().to_string();
            assert!(e.starts_with("meta_monitoring_http_client: ") && e.contains(want), "{c:?}: {e}");
        }
    }
}
