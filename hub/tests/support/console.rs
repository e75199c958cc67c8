//! Console calls for the hub's integration tests: a TLS channel showing a given certificate,
//! and a call to any console RPC by its gRPC path with an empty request message (enough to
//! see whether the console's gate lets it through).

use std::path::Path;

use synapse_hub::console::policy::Method;
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::http::uri::PathAndQuery,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

use super::{Hub, Pki};

/// A channel to `hub`'s console with the certificate `who` of `pki`.
pub async fn channel(hub: &Hub, pki: &Pki, who: &str) -> Channel {
    channel_with(hub, &pki.ca(), &pki.cert(who), &pki.key(who)).await
}

pub async fn channel_with(hub: &Hub, ca: &Path, cert: &Path, key: &Path) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
        .identity(Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ))
        .domain_name("synapse-hub");
    Channel::from_shared(hub.console.clone())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("console reachable")
}

/// A message with no fields: encodes as nothing, and decodes any message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

#[derive(Clone, Copy, Default)]
struct EmptyCodec;

impl Encoder for EmptyCodec {
    type Item = Empty;
    type Error = Status;
    fn encode(&mut self, item: Empty, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        prost::Message::encode(&item, dst).map_err(|e| Status::internal(e.to_string()))
    }
}

impl Decoder for EmptyCodec {
    type Item = Empty;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Empty>, Status> {
        prost::Message::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

impl Codec for EmptyCodec {
    type Encode = Empty;
    type Decode = Empty;
    type Encoder = Self;
    type Decoder = Self;
    fn encoder(&mut self) -> Self {
        *self
    }
    fn decoder(&mut self) -> Self {
        *self
    }
}

/// Calls `method` with an empty message; a stream counts as answered once it opens.
pub async fn call(channel: Channel, method: &Method) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = PathAndQuery::try_from(method.path.as_str()).unwrap();
    match (method.client_streaming, method.server_streaming) {
        (false, false) => grpc
            .unary(tonic::Request::new(Empty {}), path, EmptyCodec)
            .await
            .map(|_| ()),
        (false, true) => grpc
            .server_streaming(tonic::Request::new(Empty {}), path, EmptyCodec)
            .await
            .map(|_| ()),
        (true, _) => grpc
            .streaming(
                tonic::Request::new(tokio_stream::once(Empty {})),
                path,
                EmptyCodec,
            )
            .await
            .map(|_| ()),
    }
}
