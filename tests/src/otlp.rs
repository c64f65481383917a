//! A small OTLP receiver (gRPC and HTTP/protobuf) that records what the service exports,
//! for tests that assert on spans, metrics and logs.

use std::{
    collections::BTreeMap,
    io::Read as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{
            ExportLogsServiceRequest, ExportLogsServiceResponse,
            logs_service_server::{LogsService, LogsServiceServer},
        },
        metrics::v1::{
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
            metrics_service_server::{MetricsService, MetricsServiceServer},
        },
        trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
            trace_service_server::{TraceService, TraceServiceServer},
        },
    },
    common::v1::{AnyValue, KeyValue, any_value},
    logs::v1::LogRecord,
    metrics::v1::Metric,
    trace::v1::Span,
};
use prost::Message;

/// Attributes as JSON values: strings, numbers and booleans as such.
pub type Attributes = BTreeMap<String, serde_json::Value>;

/// Where a span, metric or log record came from: its instrumentation scope and the schema
/// URLs (semantic-conventions versions) its resource and scope declare.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub scope_name: String,
    pub scope_schema_url: String,
    pub resource_schema_url: String,
}

#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub resource: Attributes,
    pub origin: Origin,
    pub attributes: Attributes,
    pub span: Span,
}

impl ReceivedSpan {
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }
    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }
}

#[derive(Debug, Clone)]
pub struct ReceivedLog {
    pub resource: Attributes,
    pub origin: Origin,
    pub attributes: Attributes,
    pub record: LogRecord,
}

impl ReceivedLog {
    pub fn trace_id(&self) -> String {
        hex(&self.record.trace_id)
    }
    pub fn body(&self) -> String {
        self.record
            .body
            .as_ref()
            .map(value)
            .map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct ReceivedMetric {
    pub resource: Attributes,
    pub origin: Origin,
    pub metric: Metric,
}

#[derive(Default)]
struct Store {
    traces: Mutex<Vec<ExportTraceServiceRequest>>,
    metrics: Mutex<Vec<ExportMetricsServiceRequest>>,
    logs: Mutex<Vec<ExportLogsServiceRequest>>,
    /// The `authorization` value a request must carry, if any.
    required: Option<String>,
    refused: AtomicUsize,
    gzipped: AtomicUsize,
    /// Trace exports still to be answered with a failure before any is accepted.
    failing_traces: AtomicUsize,
    /// Whether that failure is one the OTLP specification says to retry (HTTP 503, gRPC
    /// UNAVAILABLE) or a final one (HTTP 400, gRPC INVALID_ARGUMENT).
    failure_is_retryable: bool,
    trace_attempts: AtomicUsize,
}

impl Store {
    /// Whether a request with this `authorization` value gets in; counts refusals.
    fn admits(&self, authorization: Option<&str>) -> bool {
        let admitted = self
            .required
            .as_deref()
            .is_none_or(|required| authorization == Some(required));
        if !admitted {
            self.refused.fetch_add(1, Ordering::SeqCst);
        }
        admitted
    }

    /// Counts a trace export; `Some(retryable)` when it is to be answered with a failure.
    fn trace_attempt(&self) -> Option<bool> {
        self.trace_attempts.fetch_add(1, Ordering::SeqCst);
        self.failing_traces
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1))
            .ok()
            .map(|_| self.failure_is_retryable)
    }
}

/// Listens on two random loopback ports until dropped.
pub struct OtlpReceiver {
    /// `http://127.0.0.1:PORT` of the gRPC listener.
    pub grpc_endpoint: String,
    /// `http://127.0.0.1:PORT` of the HTTP/protobuf listener (`/v1/traces`...).
    pub http_endpoint: String,
    store: Arc<Store>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl OtlpReceiver {
    pub async fn start() -> Self {
        Self::start_with(Store::default()).await
    }

    /// A receiver that answers 401 (HTTP) or UNAUTHENTICATED (gRPC) to any request whose
    /// `authorization` header is not `authorization`.
    pub async fn start_requiring(authorization: &str) -> Self {
        Self::start_with(Store {
            required: Some(authorization.to_owned()),
            ..Store::default()
        })
        .await
    }

    /// A receiver that answers the first `times` trace exports with a failure, retryable
    /// or final by the OTLP specification, then accepts them.
    pub async fn start_failing_traces(times: usize, retryable: bool) -> Self {
        Self::start_with(Store {
            failing_traces: AtomicUsize::new(times),
            failure_is_retryable: retryable,
            ..Store::default()
        })
        .await
    }

    /// Trace export requests received, failed ones included.
    pub fn trace_attempts(&self) -> usize {
        self.store.trace_attempts.load(Ordering::SeqCst)
    }

    async fn start_with(store: Store) -> Self {
        use tonic::codec::CompressionEncoding::Gzip;
        let store = Arc::new(store);
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gRPC");
        let grpc_endpoint = format!("http://{}", grpc.local_addr().expect("addr"));
        let service = Grpc(store.clone());
        let check = {
            let store = store.clone();
            move |request: tonic::Request<()>| {
                let metadata = request.metadata();
                if metadata.get("grpc-encoding").is_some_and(|v| v == "gzip") {
                    store.gzipped.fetch_add(1, Ordering::SeqCst);
                }
                let authorization = metadata.get("authorization").and_then(|v| v.to_str().ok());
                if store.admits(authorization) {
                    Ok(request)
                } else {
                    Err(tonic::Status::unauthenticated("missing or wrong credentials"))
                }
            }
        };
        let grpc_task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(tonic::service::interceptor::InterceptedService::new(
                    TraceServiceServer::new(service.clone()).accept_compressed(Gzip),
                    check.clone(),
                ))
                .add_service(tonic::service::interceptor::InterceptedService::new(
                    MetricsServiceServer::new(service.clone()).accept_compressed(Gzip),
                    check.clone(),
                ))
                .add_service(tonic::service::interceptor::InterceptedService::new(
                    LogsServiceServer::new(service).accept_compressed(Gzip),
                    check,
                ))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc))
                .await;
        });

        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind HTTP");
        let http_endpoint = format!("http://{}", http.local_addr().expect("addr"));
        let http_task = tokio::spawn(serve_http(http, store.clone()));
        Self {
            grpc_endpoint,
            http_endpoint,
            store,
            tasks: vec![grpc_task, http_task],
        }
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let requests = self.store.traces.lock().expect("lock");
        let mut spans = Vec::new();
        for request in requests.iter() {
            for resource_spans in &request.resource_spans {
                let resource = resource_attributes(resource_spans.resource.as_ref());
                for scope in &resource_spans.scope_spans {
                    let origin =
                        origin(&resource_spans.schema_url, &scope.scope, &scope.schema_url);
                    for span in &scope.spans {
                        spans.push(ReceivedSpan {
                            resource: resource.clone(),
                            origin: origin.clone(),
                            attributes: attributes(&span.attributes),
                            span: span.clone(),
                        });
                    }
                }
            }
        }
        spans
    }

    pub fn logs(&self) -> Vec<ReceivedLog> {
        let requests = self.store.logs.lock().expect("lock");
        let mut logs = Vec::new();
        for request in requests.iter() {
            for resource_logs in &request.resource_logs {
                let resource = resource_attributes(resource_logs.resource.as_ref());
                for scope in &resource_logs.scope_logs {
                    let origin = origin(&resource_logs.schema_url, &scope.scope, &scope.schema_url);
                    for record in &scope.log_records {
                        logs.push(ReceivedLog {
                            resource: resource.clone(),
                            origin: origin.clone(),
                            attributes: attributes(&record.attributes),
                            record: record.clone(),
                        });
                    }
                }
            }
        }
        logs
    }

    pub fn metrics(&self) -> Vec<ReceivedMetric> {
        let requests = self.store.metrics.lock().expect("lock");
        let mut metrics = Vec::new();
        for request in requests.iter() {
            for resource_metrics in &request.resource_metrics {
                let resource = resource_attributes(resource_metrics.resource.as_ref());
                for scope in &resource_metrics.scope_metrics {
                    let origin = origin(
                        &resource_metrics.schema_url,
                        &scope.scope,
                        &scope.schema_url,
                    );
                    for metric in &scope.metrics {
                        metrics.push(ReceivedMetric {
                            resource: resource.clone(),
                            origin: origin.clone(),
                            metric: metric.clone(),
                        });
                    }
                }
            }
        }
        metrics
    }

    /// How many export requests arrived, all signals together.
    pub fn request_count(&self) -> usize {
        self.store.traces.lock().expect("lock").len()
            + self.store.metrics.lock().expect("lock").len()
            + self.store.logs.lock().expect("lock").len()
    }

    /// Requests refused for missing or wrong credentials.
    pub fn refused_count(&self) -> usize {
        self.store.refused.load(Ordering::SeqCst)
    }

    /// Requests that arrived gzip-compressed.
    pub fn gzipped_count(&self) -> usize {
        self.store.gzipped.load(Ordering::SeqCst)
    }

    /// Polls `check` until it returns `Some`, or panics after `timeout` with `what`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Self) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = check(self) {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[derive(Clone)]
struct Grpc(Arc<Store>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        match self.0.trace_attempt() {
            Some(true) => return Err(tonic::Status::unavailable("try again")),
            Some(false) => return Err(tonic::Status::invalid_argument("not this")),
            None => {}
        }
        self.0
            .traces
            .lock()
            .expect("lock")
            .push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0
            .metrics
            .lock()
            .expect("lock")
            .push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.0.logs.lock().expect("lock").push(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// OTLP/HTTP with binary protobuf bodies, as the OTLP specification describes it.
async fn serve_http(listener: tokio::net::TcpListener, store: Arc<Store>) {
    use poem::{
        EndpointExt, Route, Server, handler,
        http::StatusCode,
        listener::TcpAcceptor,
        post,
        web::{Data, Path},
    };

    #[handler]
    fn export(
        Path(signal): Path<String>,
        headers: &poem::http::HeaderMap,
        body: Vec<u8>,
        store: Data<&Arc<Store>>,
    ) -> poem::Response {
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
        if !store.admits(authorization) {
            return poem::Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .finish();
        }
        let body = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
            store.gzipped.fetch_add(1, Ordering::SeqCst);
            let mut plain = Vec::new();
            if flate2::read::GzDecoder::new(body.as_slice())
                .read_to_end(&mut plain)
                .is_err()
            {
                return poem::Response::builder()
                    .status(StatusCode::BAD_REQUEST)
                    .finish();
            }
            plain
        } else {
            body
        };
        if signal == "traces"
            && let Some(retryable) = store.trace_attempt()
        {
            let status = if retryable {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_REQUEST
            };
            return poem::Response::builder().status(status).finish();
        }
        let accepted = match signal.as_str() {
            "traces" => ExportTraceServiceRequest::decode(body.as_ref())
                .map(|request| store.traces.lock().expect("lock").push(request))
                .map(|()| ExportTraceServiceResponse::default().encode_to_vec()),
            "metrics" => ExportMetricsServiceRequest::decode(body.as_ref())
                .map(|request| store.metrics.lock().expect("lock").push(request))
                .map(|()| ExportMetricsServiceResponse::default().encode_to_vec()),
            "logs" => ExportLogsServiceRequest::decode(body.as_ref())
                .map(|request| store.logs.lock().expect("lock").push(request))
                .map(|()| ExportLogsServiceResponse::default().encode_to_vec()),
            _ => {
                return poem::Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .finish();
            }
        };
        match accepted {
            Ok(response) => poem::Response::builder()
                .content_type("application/x-protobuf")
                .body(response),
            Err(_) => poem::Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .finish(),
        }
    }

    let app = Route::new().at("/v1/:signal", post(export)).data(store);
    let acceptor = TcpAcceptor::from_tokio(listener).expect("acceptor");
    let _ = Server::new_with_acceptor(acceptor).run(app).await;
}

fn resource_attributes(
    resource: Option<&opentelemetry_proto::tonic::resource::v1::Resource>,
) -> Attributes {
    resource
        .map(|resource| attributes(&resource.attributes))
        .unwrap_or_default()
}

fn origin(
    resource_schema_url: &str,
    scope: &Option<opentelemetry_proto::tonic::common::v1::InstrumentationScope>,
    scope_schema_url: &str,
) -> Origin {
    Origin {
        scope_name: scope.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
        scope_schema_url: scope_schema_url.to_owned(),
        resource_schema_url: resource_schema_url.to_owned(),
    }
}

pub fn attributes(pairs: &[KeyValue]) -> Attributes {
    pairs
        .iter()
        .map(|pair| {
            (
                pair.key.clone(),
                pair.value.as_ref().map(value).unwrap_or_default(),
            )
        })
        .collect()
}

fn value(value: &AnyValue) -> serde_json::Value {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone().into(),
        Some(any_value::Value::IntValue(i)) => (*i).into(),
        Some(any_value::Value::BoolValue(b)) => (*b).into(),
        Some(any_value::Value::DoubleValue(d)) => (*d).into(),
        Some(any_value::Value::ArrayValue(array)) => array.values.iter().map(self::value).collect(),
        Some(other) => format!("{other:?}").into(),
        None => serde_json::Value::Null,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
