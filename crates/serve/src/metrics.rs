//! Prometheus metrics of the server, exposed at `GET /metrics` in the text format.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The server's metrics, all in one registry.
pub struct Metrics {
    registry: Registry,
    /// `suite_requests_total{route, model, status}`.
    pub requests: IntCounterVec,
    /// `suite_requests_in_flight{route}`: requests received and not yet answered.
    pub in_flight: IntGaugeVec,
    /// `suite_request_duration_seconds{route, model}`: from the request's arrival to its response.
    pub latency: HistogramVec,
    /// `suite_batch_size{model}`: requests answered by one forward pass.
    pub batch_size: HistogramVec,
    /// `suite_queue_depth{model}`: requests waiting for their model's inference thread.
    pub queue_depth: IntGaugeVec,
    /// `suite_model_load_seconds{model}`: how long loading took.
    pub load_seconds: GaugeVec,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("suite_requests_total", "HTTP requests answered, by route, model and status code"),
            &["route", "model", "status"],
        )
        .expect("valid metric");
        let in_flight = IntGaugeVec::new(
            Opts::new("suite_requests_in_flight", "HTTP requests received and not yet answered, by route"),
            &["route"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("suite_request_duration_seconds", "Time from a request's arrival to its response")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            &["route", "model"],
        )
        .expect("valid metric");
        let batch_size = HistogramVec::new(
            HistogramOpts::new("suite_batch_size", "Requests answered together by one batched forward pass")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
            &["model"],
        )
        .expect("valid metric");
        let queue_depth = IntGaugeVec::new(
            Opts::new("suite_queue_depth", "Requests waiting for the model's inference thread"),
            &["model"],
        )
        .expect("valid metric");
        let load_seconds =
            GaugeVec::new(Opts::new("suite_model_load_seconds", "Seconds it took to load the model"), &["model"])
                .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(in_flight.clone()),
            Box::new(latency.clone()),
            Box::new(batch_size.clone()),
            Box::new(queue_depth.clone()),
            Box::new(load_seconds.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self { registry, requests, in_flight, latency, batch_size, queue_depth, load_seconds }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("encoding metrics into memory");
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
