//! Read access: head statistics for `/api/v1/status/tsdb`, series selected by label matchers
//! (blocks and head together), label names and values, and full dumps.

use std::collections::{BTreeMap, HashMap};

use super::Tsdb;
use crate::labels::{Labels, SeriesData, StringList};
use crate::postings::Matcher;

/// Head statistics as Prometheus reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadStats {
    /// Number of series.
    pub num_series: u64,
    /// Number of chunks.
    pub chunk_count: i64,
    /// Lowest sample timestamp (`i64::MAX` when empty, as Prometheus).
    pub min_time: i64,
    /// Highest sample timestamp (`i64::MIN` when empty).
    pub max_time: i64,
}

/// A name and a count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Name.
    pub name: String,
    /// Count.
    pub value: u64,
}

/// Cardinality statistics of the head (Prometheus' `MemPostings.Stats`).
#[derive(Debug, Clone, Default)]
pub struct Cardinality {
    /// Number of distinct label name/value pairs.
    pub num_label_pairs: u64,
    /// Series per metric name, largest first.
    pub series_count_by_metric_name: Vec<Stat>,
    /// Distinct values per label name, largest first.
    pub label_value_count_by_label_name: Vec<Stat>,
    /// Bytes of label strings per label name, largest first.
    pub memory_in_bytes_by_label_name: Vec<Stat>,
    /// Series per `name=value` pair, largest first.
    pub series_count_by_label_value_pair: Vec<Stat>,
}

fn top(map: HashMap<String, u64>, limit: usize) -> Vec<Stat> {
    let mut v: Vec<Stat> = map.into_iter().map(|(name, value)| Stat { name, value }).collect();
    v.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.name.cmp(&b.name)));
    v.truncate(limit);
    v
}

impl Tsdb {
    /// Series count, chunk count and time bounds of the head.
    pub fn head_stats(&self) -> HeadStats {
        HeadStats {
            num_series: self.head.num_series(),
            chunk_count: self.metrics().head.chunks.get(),
            min_time: self.head.min_time(),
            max_time: self.head.max_time(),
        }
    }

    /// Cardinality statistics with the top `limit` entries of each list. Walks every series.
    pub fn cardinality(&self, limit: usize) -> Cardinality {
        let _symbols = self.head.symbol_gate.read();
        let mut by_metric: HashMap<u32, u64> = HashMap::new();
        let mut pairs: HashMap<(u32, u32), u64> = HashMap::new();
        let symbols = &self.head.symbols;
        let name_sym = symbols.intern(b"__name__");
        self.head.for_each_series(|s| {
            for p in s.labels.chunks_exact(2) {
                *pairs.entry((p[0], p[1])).or_default() += 1;
                if p[0] == name_sym {
                    *by_metric.entry(p[1]).or_default() += 1;
                }
            }
        });
        let mut values_per_name: HashMap<String, u64> = HashMap::new();
        let mut memory_per_name: HashMap<String, u64> = HashMap::new();
        let mut per_pair: HashMap<String, u64> = HashMap::new();
        for (&(n, v), &count) in &pairs {
            let name = symbols.get(n);
            let value = symbols.get(v);
            *values_per_name.entry(name.clone()).or_default() += 1;
            // Prometheus' `labels.SizeOfLabels` as Thanos builds it (`slicelabels`): both
            // strings and their 16-byte headers, per series.
            let size = (name.len() + 16 + value.len() + 16) as u64;
            *memory_per_name.entry(name.clone()).or_default() += size * count;
            per_pair.insert(format!("{name}={value}"), count);
        }
        Cardinality {
            num_label_pairs: pairs.len() as u64,
            series_count_by_metric_name: top(by_metric.into_iter().map(|(k, v)| (symbols.get(k), v)).collect(), limit),
            label_value_count_by_label_name: top(values_per_name, limit),
            memory_in_bytes_by_label_name: top(memory_per_name, limit),
            series_count_by_label_value_pair: top(per_pair, limit),
        }
    }

    /// Every series with all its samples, sorted by labels. Meant for tools and tests.
    pub fn dump(&self) -> Vec<SeriesData> {
        self.dump_range(i64::MIN, i64::MAX)
    }

    /// Every series with its samples in `[mint, maxt]` (series without any are left out),
    /// sorted by labels.
    pub fn dump_range(&self, mint: i64, maxt: i64) -> Vec<SeriesData> {
        let _symbols = self.head.symbol_gate.read();
        let mut out = BTreeMap::new();
        self.head.for_each_series(|s| {
            let samples = s.state.lock().samples_in(mint, maxt, &self.head.disk);
            if !samples.is_empty() || (mint, maxt) == (i64::MIN, i64::MAX) {
                out.insert(self.head.labels_of(s), samples);
            }
        });
        out.into_iter().map(|(labels, samples)| SeriesData { labels, samples }).collect()
    }

    /// Every series with its samples in `[mint, maxt]` from the blocks and the head together
    /// (a timestamp held twice is reported once), sorted by labels.
    pub fn read_all(&self, mint: i64, maxt: i64) -> Result<Vec<SeriesData>, super::TsdbError> {
        self.select(&[], mint, maxt)
    }

    /// The series selected by `matchers` (Prometheus' semantics: a matcher that matches the
    /// empty string also selects series without the label) with their samples in
    /// `[mint, maxt]`, from the blocks and the head together (a timestamp held twice is
    /// reported once), sorted by labels; series without samples there are left out.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<SeriesData>, super::TsdbError> {
        let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        for b in self.blocks_overlapping(mint, maxt) {
            for s in b.select(matchers, mint, maxt)? {
                out.entry(s.labels).or_default().extend(s.samples);
            }
        }
        let head = if matchers.is_empty() {
            self.dump_range(mint, maxt)
        } else {
            let series = self.head.select(matchers);
            let _symbols = self.head.symbol_gate.read();
            series
                .iter()
                .map(|s| SeriesData {
                    labels: self.head.labels_of(s),
                    samples: s.state.lock().samples_in(mint, maxt, &self.head.disk),
                })
                .collect()
        };
        for s in head {
            if !s.samples.is_empty() {
                out.entry(s.labels).or_default().extend(s.samples);
            }
        }
        Ok(out
            .into_iter()
            .map(|(labels, mut samples)| {
                samples.sort_by_key(|&(t, _)| t);
                samples.dedup_by_key(|&mut (t, _)| t);
                SeriesData { labels, samples }
            })
            .collect())
    }

    /// Label names of the series in the blocks and the head that overlap `[mint, maxt]`
    /// (whole blocks and the whole head, as Prometheus' queriers answer), sorted.
    pub fn label_names(&self, mint: i64, maxt: i64) -> Result<Vec<String>, super::TsdbError> {
        let mut lists = Vec::new();
        if self.head_overlaps(mint, maxt) {
            lists.push(self.head.label_names());
        }
        for b in self.blocks_overlapping(mint, maxt) {
            lists.push(StringList::from_sorted(b.index()?.label_names()));
        }
        Ok(StringList::merge(lists).iter().map(str::to_owned).collect())
    }

    /// Values of label `name` in the blocks and the head that overlap `[mint, maxt]`, sorted.
    pub fn label_values(&self, name: &str, mint: i64, maxt: i64) -> Result<StringList, super::TsdbError> {
        let mut lists = Vec::new();
        if self.head_overlaps(mint, maxt) {
            lists.push(self.head.label_values(name));
        }
        for b in self.blocks_overlapping(mint, maxt) {
            lists.push(StringList::from_sorted(b.index()?.label_values(name)));
        }
        Ok(StringList::merge(lists))
    }

    /// The blocks with a sample time in `[mint, maxt]` possible (block ends are exclusive).
    fn blocks_overlapping(&self, mint: i64, maxt: i64) -> Vec<std::sync::Arc<crate::block::Block>> {
        self.blocks().into_iter().filter(|b| b.meta().max_time > mint && b.meta().min_time <= maxt).collect()
    }

    fn head_overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.head.min_time() <= maxt && self.head.max_time() >= mint
    }
}
