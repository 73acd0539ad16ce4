//! The worker's HTTP endpoint for confidential queries; thin wiring around [`QueryService`].
//!
//! - `GET /info`: `{ "id", "x25519", "chain_id" }` (clients check the key against the worker's attested record
//!   on chain before sealing to it).
//! - `POST /query`: body = a query envelope; `200` with the encoded [`umbra_types::contracts::QueryReply`], or
//!   `400` with the reason in plain text.

use crate::query::{MAX_QUERY_BYTES, QueryService};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};

/// Serves queries on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, service: QueryService) -> std::io::Result<()> {
    let app = Router::new()
        .route("/info", get(info))
        .route("/query", post(query))
        .layer(DefaultBodyLimit::max(MAX_QUERY_BYTES))
        .with_state(service);
    axum::serve(listener, app).await
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
