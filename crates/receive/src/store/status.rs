//! `thanos.Status/TSDBStatistics` (head statistics per tenant, for Thanos Query's TSDB status
//! page) and `thanos.Exemplars/Exemplars` (served; empty, as ringest stores no exemplars yet).

use std::collections::HashMap;
use std::pin::Pin;

use ringest_proto::thanos::{
    ExemplarsRequest, ExemplarsResponse, HeadStatistics, Statistic, TsdbStatistics, TsdbStatisticsEntry,
    TsdbStatisticsRequest, TsdbStatisticsResponse, exemplars_server, label_matcher, status_server,
    tsdb_statistics_response,
};
use ringest_tsdb::db::Stat;
use tonic::{Request, Response, Status};

use super::{StoreApi, blocking, matchers};

/// Entries per statistics list when the request names no limit (Prometheus' default).
const DEFAULT_LIMIT: usize = 10;

fn stats(list: Vec<Stat>) -> Vec<Statistic> {
    list.into_iter().map(|s| Statistic { name: s.name, value: s.value }).collect()
}

type Stream<T> = Pin<Box<dyn tonic::codegen::tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl status_server::Status for StoreApi {
    type TSDBStatisticsStream = Stream<TsdbStatisticsResponse>;

    async fn tsdb_statistics(
        &self,
        request: Request<TsdbStatisticsRequest>,
    ) -> Result<Response<Self::TSDBStatisticsStream>, Status> {
        if !self.probe.is_ready() {
            return Err(Status::unknown("not ready"));
        }
        let req = request.into_inner();
        let ms = matchers(&req.matchers)
            .map_err(|e| Status::unknown(format!("failed to convert matchers: {}", e.message())))?;
        let tenant_label = self.ext.tenant_label().to_string();
        // Only equality matchers on the tenant label name the tenants to look at.
        let named: Option<Vec<String>> = {
            let on_tenant: Vec<_> = req.matchers.iter().filter(|m| m.name == tenant_label).collect();
            (!on_tenant.is_empty() && on_tenant.iter().all(|m| m.r#type == label_matcher::Type::Eq as i32))
                .then(|| on_tenant.iter().map(|m| m.value.clone()).collect())
        };
        let (tenants, ext) = (self.tenants.all(), self.ext.clone());
        let limit = usize::try_from(req.limit).ok().filter(|&l| l > 0).unwrap_or(DEFAULT_LIMIT);
        let out = blocking(move || {
            let mut statistics = HashMap::new();
            for (tenant, db) in tenants {
                if named.as_ref().is_some_and(|n| !n.contains(&tenant))
                    || (!req.tenant.is_empty() && req.tenant != tenant)
                {
                    continue;
                }
                let labels = ext.of_flags(&tenant);
                if !ms.iter().all(|m| m.matches(labels.get(&m.name).map(String::as_str).unwrap_or(""))) {
                    continue;
                }
                let (head, card) = (db.head_stats(), db.cardinality(limit));
                let entry = TsdbStatisticsEntry {
                    head_statistics: Some(HeadStatistics {
                        num_series: head.num_series,
                        num_label_pairs: card.num_label_pairs as i64,
                        chunk_count: 0,
                        min_time: head.min_time,
                        max_time: head.max_time,
                    }),
                    series_count_by_metric_name: stats(card.series_count_by_metric_name),
                    label_value_count_by_label_name: stats(card.label_value_count_by_label_name),
                    memory_in_bytes_by_label_name: stats(card.memory_in_bytes_by_label_name),
                    series_count_by_label_value_pair: stats(card.series_count_by_label_value_pair),
                };
                statistics.insert(tenant, entry);
            }
            let frame = tsdb_statistics_response::Result::Statistics(TsdbStatistics { statistics });
            Ok(TsdbStatisticsResponse { result: Some(frame) })
        })
        .await?;
        Ok(Response::new(Box::pin(tonic::codegen::tokio_stream::iter([Ok(out)]))))
    }
}

#[tonic::async_trait]
impl exemplars_server::Exemplars for StoreApi {
    type ExemplarsStream = Stream<ExemplarsResponse>;

    async fn exemplars(&self, _request: Request<ExemplarsRequest>) -> Result<Response<Self::ExemplarsStream>, Status> {
        Ok(Response::new(Box::pin(tonic::codegen::tokio_stream::empty())))
    }
}
