//! The worker's HTTP endpoint for confidential queries and the agent gateway; thin wiring around
//! [`QueryService`] and [`AgentService`].
//!
//! - `GET /info`: `{ "id", "x25519", "chain_id" }` (clients check the key against the worker's attested record
//!   on chain before sealing to it).
//! - `POST /query`: body = a query envelope; `200` with the encoded [`umbra_types::contracts::QueryReply`], or
//!   `400` with the reason in plain text.
//! - `ANY /agents/{id}` and `ANY /agents/{id}/{*path}`: a public agent's handler over plain HTTP; the answer
//!   carries `x-umbra-worker` and `x-umbra-signature`; refusals are a status with `{ "error": ... }`.
//! - `POST /agents/{id}/sealed`: an HPKE-sealed request; `200` with the encoded
//!   [`umbra_types::agents::SealedReply`], or a status with `{ "error": ... }` if it cannot be opened.
//! - `POST /agents/{id}/receipts`: an owner-signed [`umbra_types::agents::LogsRequest`]; `200` with the
//!   committed egress receipt batches (receipts and inclusion proofs) sealed to the owner.
//! - `POST /agents/{id}/logs`: an owner-signed [`umbra_types::agents::LogsRequest`]; `200` with the lines sealed
//!   to the owner.
//! - `POST /snapshot` (with [`serve_with_snapshots`]): a joining member's signed
//!   [`crate::snapshot::SnapshotRequest`] (JSON); `200` with the encoded [`crate::snapshot::SnapshotReply`] (the
//!   cluster's contracts sealed to the requester's attested key), or `400` with the reason.

use crate::agents::{AgentService, GatewayAnswer, GatewayError, MAX_BODY_BYTES};
use crate::query::{MAX_QUERY_BYTES, QueryService};
use crate::snapshot::SnapshotService;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use umbra_types::agents::AgentHttpRequest;

/// Serves queries and agents on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: QueryService,
    agents: AgentService,
) -> std::io::Result<()> {
    axum::serve(listener, router(service, agents)).await
}

/// Serves queries, agents and `POST /snapshot` (a member's sealed contract snapshot for a joining worker, see
/// [`crate::snapshot`]: `200` with the encoded [`crate::snapshot::SnapshotReply`], or `400` with the reason).
pub async fn serve_with_snapshots(
    listener: tokio::net::TcpListener,
    service: QueryService,
    agents: AgentService,
    snapshots: SnapshotService,
) -> std::io::Result<()> {
    let snapshot = Router::new()
        .route("/snapshot", post(snapshot))
        .layer(DefaultBodyLimit::max(crate::snapshot::MAX_REQUEST_BYTES))
        .with_state(snapshots);
    axum::serve(listener, router(service, agents).merge(snapshot)).await
}

fn router(service: QueryService, agents: AgentService) -> Router {
    let queries = Router::new()
        .route("/info", get(info))
        .route("/query", post(query))
        .layer(DefaultBodyLimit::max(MAX_QUERY_BYTES))
        .with_state(service);
    let gateway = Router::new()
        .route("/agents/{id}/sealed", post(sealed))
        .route("/agents/{id}/logs", post(logs))
        .route("/agents/{id}/receipts", post(receipts))
        .route("/agents/{id}", any(plain_root))
        .route("/agents/{id}/", any(plain_root))
        .route("/agents/{id}/{*path}", any(plain))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES + 4096))
        .with_state(agents);
    queries.merge(gateway)
}

async fn snapshot(State(snapshots): State<SnapshotService>, body: Bytes) -> Result<Vec<u8>, (StatusCode, String)> {
    let answer = tokio::task::spawn_blocking(move || snapshots.answer(&body))
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    answer.map_err(|e| {
        tracing::warn!(target: "worker.snapshot", "snapshot request refused: {e}");
        (StatusCode::BAD_REQUEST, e.to_string())
    })
}

async fn info(State(service): State<QueryService>) -> (StatusCode, String) {
    match service.identity() {
        Some((id, x25519, chain_id)) => {
            (StatusCode::OK, serde_json::json!({ "id": id, "x25519": x25519, "chain_id": chain_id }).to_string())
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, "the worker is starting".into()),
    }
}

async fn query(State(service): State<QueryService>, body: Bytes) -> Result<Vec<u8>, (StatusCode, String)> {
    let answer = tokio::task::spawn_blocking(move || service.answer(&body))
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    answer.map_err(|e| {
        tracing::debug!(target: "worker.query", "query refused: {e}");
        (StatusCode::BAD_REQUEST, e.to_string())
    })
}

fn json_refusal(e: GatewayError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({ "error": e.message }).to_string();
    (status, [("content-type", "application/json")], body).into_response()
}

fn to_response(a: GatewayAnswer) -> Response {
    let mut r = Response::new(axum::body::Body::from(a.body));
    *r.status_mut() = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in a.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            r.headers_mut().append(k, v);
        }
    }
    r
}

async fn plain_root(
    state: State<AgentService>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve_plain(state.0, id, String::new(), method, uri, headers, body).await
}

async fn plain(
    state: State<AgentService>,
    Path((id, path)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve_plain(state.0, id, path, method, uri, headers, body).await
}

async fn serve_plain(
    agents: AgentService,
    id: String,
    path: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut full = format!("/{path}");
    if let Some(q) = uri.query() {
        full.push('?');
        full.push_str(q);
    }
    let host = headers.get("host").and_then(|h| h.to_str().ok()).map(str::to_string);
    let headers: Vec<(String, String)> =
        headers.iter().filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string()))).collect();
    let request = AgentHttpRequest { method: method.as_str().to_string(), path: full, headers, body: body.to_vec() };
    match tokio::task::spawn_blocking(move || agents.plain(&id, request, host.as_deref())).await {
        Ok(a) => to_response(a),
        Err(e) => json_refusal(GatewayError { status: 500, message: e.to_string() }),
    }
}

async fn sealed(State(agents): State<AgentService>, Path(id): Path<String>, body: Bytes) -> Response {
    match tokio::task::spawn_blocking(move || agents.sealed(&id, &body)).await {
        Ok(Ok(reply)) => (StatusCode::OK, reply).into_response(),
        Ok(Err(e)) => json_refusal(e),
        Err(e) => json_refusal(GatewayError { status: 500, message: e.to_string() }),
    }
}

async fn logs(State(agents): State<AgentService>, Path(id): Path<String>, body: Bytes) -> Response {
    match tokio::task::spawn_blocking(move || agents.logs(&id, &body)).await {
        Ok(Ok(sealed)) => (StatusCode::OK, sealed).into_response(),
        Ok(Err(e)) => json_refusal(e),
        Err(e) => json_refusal(GatewayError { status: 500, message: e.to_string() }),
    }
}

async fn receipts(State(agents): State<AgentService>, Path(id): Path<String>, body: Bytes) -> Response {
    match tokio::task::spawn_blocking(move || agents.receipts(&id, &body)).await {
        Ok(Ok(sealed)) => (StatusCode::OK, sealed).into_response(),
        Ok(Err(e)) => json_refusal(e),
        Err(e) => json_refusal(GatewayError { status: 500, message: e.to_string() }),
    }
}
