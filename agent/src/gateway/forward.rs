//! Sends one invocation to one instance over a fresh HTTP/1.1 connection (one connection per
//! invocation, so the kernel's accept count is the invocation count) and reads its whole
//! answer, so that a crash in the middle is seen as a failure of that instance.

use std::{net::SocketAddr, time::Duration};

use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;

/// Why an instance did not answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Nothing was delivered: safe to try another instance.
    #[error("connecting to the instance: {0}")]
    Connect(std::io::Error),
    #[error("the instance broke the exchange: {0}")]
    Broken(String),
    #[error("the instance took longer than the invocation timeout ({0:?})")]
    Timeout(Duration),
}

/// Headers that belong to one hop and are not passed on.
const HOP_BY_HOP: &[header::HeaderName] = &[
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::HOST,
    header::CONTENT_LENGTH,
];

pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for h in HOP_BY_HOP {
        headers.remove(h);
    }
    headers.remove("keep-alive");
}

pub async fn forward(
    addr: SocketAddr,
    method: Method,
    path_and_query: &str,
    mut headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Result<Response<Bytes>, ForwardError> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(ForwardError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ForwardError::Broken(e.to_string()))?;
        strip_hop_by_hop(&mut headers);
        let mut request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .body(Full::new(body))
            .map_err(|e| ForwardError::Broken(e.to_string()))?;
        *request.headers_mut() = headers;
        let h = request.headers_mut();
        h.insert(
            header::HOST,
            HeaderValue::from_str(&addr.to_string()).expect("an address is a valid header"),
        );
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        let answer = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| ForwardError::Broken(e.to_string()))?;
            let (parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|e| ForwardError::Broken(e.to_string()))?
                .to_bytes();
            Ok(Response::from_parts(parts, bytes))
        };
        // The connection is driven in this task rather than spawned: one task per invocation,
        // not two. It ends by itself once the answer is read (`Connection: close`); when the
        // answer is complete first, dropping it closes the socket.
        tokio::pin!(answer, conn);
        tokio::select! {
            biased;
            result = &mut answer => result,
            _ = &mut conn => answer.await,
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(ForwardError::Timeout(timeout)))
}
