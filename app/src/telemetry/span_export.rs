//! The OTLP span exporter: batches encoded by [`super::span_encoding`] and sent over
//! OTLP/HTTP or gRPC, with the transports of [`super::transport`] (the same TLS, the
//! same failure verdicts as the metric and log exporters, which stay opentelemetry-otlp's).
//!
//! It follows the OTLP exporter specification for what the service uses: the endpoint
//! (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, else `OTEL_EXPORTER_OTLP_ENDPOINT` plus
//! `/v1/traces` over HTTP), `..._HEADERS`, `..._COMPRESSION` (`gzip`), `..._TIMEOUT`, and
//! retries of the answers the specification calls retryable (HTTP 429/502/503/504 or no
//! answer; gRPC UNAVAILABLE, CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE,
//! DATA_LOSS) with exponential backoff, within the timeout - as opentelemetry-otlp does.

use std::{
    io::Write as _,
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bytes::{Buf as _, BufMut as _, Bytes};
use http::{HeaderName, HeaderValue, Request, header};
use opentelemetry_http::HttpClient as _;
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    trace::{SpanData, SpanExporter},
};
use tonic::{
    codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder as GrpcEncoder},
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::Channel,
};

use super::{
    otlp_env::{OtlpSettings, Protocol},
    span_encoding::{EncodedResource, Encoder},
    transport::ObservedHttp,
};

const GRPC_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// Attempts after the first, and the first backoff (doubled each time, at most 1.6 s).
const RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug)]
enum Transport {
    Http { client: ObservedHttp, url: http::Uri },
    Grpc { channel: Channel, metadata: MetadataMap },
}

#[derive(Debug)]
pub struct OtlpSpanExporter {
    transport: Transport,
    headers: Vec<(HeaderName, HeaderValue)>,
    gzip: bool,
    timeout: Duration,
    resource: EncodedResource,
    /// The encoder's buffers, reused from batch to batch (the batch processor exports
    /// one batch at a time; the lock is never contended).
    encoder: Mutex<(Encoder, Vec<u8>)>,
}

impl OtlpSpanExporter {
    /// Over OTLP/HTTP through `client` (TLS and verdicts included).
    pub fn http(settings: &OtlpSettings, client: ObservedHttp) -> anyhow::Result<Self> {
        let url = match settings.endpoint_for_signal() {
            Some(url) => url,
            None => match settings.endpoint.as_deref() {
                Some(base) => format!("{}/v1/traces", base.trim().trim_end_matches('/')),
                None => "http://localhost:4318/v1/traces".to_owned(),
            },
        };
        let url = url.trim().parse().with_context(|| {
            format!("{} is not a valid OTLP/HTTP endpoint", settings.endpoint_variable())
        })?;
        Self::new(settings, Transport::Http { client, url })
    }

    /// Over gRPC on `channel` (`transport::grpc_channel`: plain, or TLS for `https://`).
    pub fn grpc(settings: &OtlpSettings, channel: Channel) -> anyhow::Result<Self> {
        debug_assert_eq!(settings.protocol, Protocol::Grpc);
        let mut metadata = MetadataMap::new();
        for (name, value) in settings.headers()? {
            let key = MetadataKey::from_bytes(name.as_str().as_bytes())
                .with_context(|| format!("header {name} is not a gRPC metadata key"))?;
            let value = MetadataValue::try_from(value.as_bytes())
                .with_context(|| format!("the value of header {name} is not valid gRPC metadata"))?;
            metadata.insert(key, value);
        }
        Self::new(settings, Transport::Grpc { channel, metadata })
    }

    fn new(settings: &OtlpSettings, transport: Transport) -> anyhow::Result<Self> {
        Ok(Self {
            headers: match transport {
                Transport::Http { .. } => settings.headers()?,
                Transport::Grpc { .. } => Vec::new(),
            },
            transport,
            gzip: settings.gzip,
            timeout: settings.timeout,
            resource: EncodedResource::default(),
            encoder: Mutex::default(),
        })
    }

    fn encode(&self, batch: &[SpanData]) -> Bytes {
        let mut guard = self.encoder.lock().unwrap_or_else(|e| e.into_inner());
        let (encoder, buffer) = &mut *guard;
        encoder.encode(batch, &self.resource, buffer);
        if self.gzip && matches!(self.transport, Transport::Http { .. }) {
            // gRPC compresses in tonic (grpc-encoding); OTLP/HTTP here.
            let mut gzip = flate2::write::GzEncoder::new(
                Vec::with_capacity(buffer.len() / 4),
                flate2::Compression::default(),
            );
            let _ = gzip.write_all(buffer);
            return gzip.finish().map(Bytes::from).unwrap_or_default();
        }
        Bytes::copy_from_slice(buffer)
    }

    /// One attempt: `Ok`, or the error and whether the specification says to retry.
    async fn send(&self, body: Bytes) -> Result<(), (String, bool)> {
        match &self.transport {
            Transport::Http { client, url } => {
                let mut request = Request::post(url.clone())
                    .header(header::CONTENT_TYPE, "application/x-protobuf");
                if self.gzip {
                    request = request.header(header::CONTENT_ENCODING, "gzip");
                }
                let mut request = request
                    .body(body)
                    .map_err(|error| (error.to_string(), false))?;
                for (name, value) in &self.headers {
                    request.headers_mut().insert(name.clone(), value.clone());
                }
                match client.send_bytes(request).await {
                    Ok(response) if response.status().is_success() => Ok(()),
                    Ok(response) => {
                        let status = response.status().as_u16();
                        Err((
                            format!("HTTP export failed: the backend answered {status}"),
                            matches!(status, 429 | 502 | 503 | 504),
                        ))
                    }
                    Err(error) => Err((format!("HTTP export failed: {error}"), true)),
                }
            }
            Transport::Grpc { channel, metadata } => {
                let mut grpc = tonic::client::Grpc::new(channel.clone());
                if self.gzip {
                    grpc = grpc.send_compressed(CompressionEncoding::Gzip);
                }
                grpc.ready()
                    .await
                    .map_err(|error| (format!("gRPC export failed: {error}"), true))?;
                let mut request = tonic::Request::new(body);
                *request.metadata_mut() = metadata.clone();
                request.set_timeout(self.timeout);
                let path = http::uri::PathAndQuery::from_static(GRPC_PATH);
                match grpc.unary(request, path, BytesCodec).await {
                    Ok(_) => Ok(()),
                    Err(status) => {
                        use tonic::Code;
                        let retry = matches!(
                            status.code(),
                            Code::Unavailable
                                | Code::Cancelled
                                | Code::DeadlineExceeded
                                | Code::Aborted
                                | Code::OutOfRange
                                | Code::DataLoss
                        );
                        // The code by tonic's `Code` name, as `transport::grpc_rejection`
                        // reads it; never the server's message, which may echo a token.
                        Err((
                            format!("gRPC export failed, gRPC code: {:?}", status.code()),
                            retry,
                        ))
                    }
                }
            }
        }
    }
}

impl SpanExporter for OtlpSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if batch.is_empty() {
            return Ok(());
        }
        let body = self.encode(&batch);
        drop(batch);
        let deadline = Instant::now() + self.timeout;
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            match self.send(body.clone()).await {
                Ok(()) => return Ok(()),
                Err((error, retry)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if !retry || attempt == RETRIES || backoff >= left {
                        return Err(OTelSdkError::InternalFailure(error));
                    }
                }
            }
            attempt += 1;
            // The SDK's batch thread (futures' executor, no Tokio timer here).
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(1600));
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = EncodedResource::new(resource);
    }
}

/// A codec that sends bytes already encoded and ignores the answer's body (a partial
/// success count the service would only log).
#[derive(Debug, Clone, Copy, Default)]
struct BytesCodec;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl GrpcEncoder for BytesCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, Self::Error> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}
