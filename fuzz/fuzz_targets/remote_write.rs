//! The remote-write decoders on arbitrary bytes: `prometheus.WriteRequest` and
//! `thanos.WriteRequest` never panic, and the counting passes that bound a request before it is
//! decoded never count less than the decoder keeps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringest::remote_write::{Decoded, Shape, decode_thanos_write_request, decode_write_request, outline, shape_of};

fuzz_target!(|data: &[u8]| {
    let mut d = Decoded::default();
    if decode_write_request(data, &mut d).is_ok() {
        let shape = shape_of(data, false, &Shape::UNBOUNDED).expect("a request that decodes is counted");
        assert!(shape.series >= d.series.len() as u64);
        assert!(shape.labels >= d.labels.len() as u64);
        assert!(shape.samples >= d.samples.len() as u64);
        let o = outline(data, false, u64::MAX).expect("a request that decodes is outlined");
        assert_eq!(o.series, d.series.len() as u64);
        assert!(o.decoded_form_bound() >= shape.decoded_form_bytes(), "the outline bounds the decoded form");
        for s in &d.series {
            assert!(s.labels_start <= s.labels_end && s.labels_end as usize <= d.labels.len());
            assert!(s.samples_start <= s.samples_end && s.samples_end as usize <= d.samples.len());
            let _ = s.raw(data);
        }
        for l in &d.labels {
            let _ = (l.name(data), l.value(data));
        }
    }
    if let Ok(w) = decode_thanos_write_request(data, &Shape::default()) {
        let shape = shape_of(data, true, &Shape::UNBOUNDED).expect("a request that decodes is counted");
        let series: usize = w.tenants.iter().map(|(_, d)| d.series.len()).sum();
        let samples: usize = w.tenants.iter().map(|(_, d)| d.samples.len()).sum();
        assert!(shape.series >= series as u64 && shape.samples >= samples as u64);
    }
});
