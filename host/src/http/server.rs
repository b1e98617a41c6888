//! The HTTP server: a `tiny_http` socket bound before the plugins load, served by
//! [`THREADS`] threads of its own once `run` has them (so a slow `/ready`, which asks
//! the plugins, does not hold `/health` up), stopped (unblocked and joined) before the
//! plugins shut down. GET only (anything else: 405 with `Allow: GET`); an unknown
//! path: 404. Every body passes the conf's secret scrubber before it is sent.

use std::{net::SocketAddr, sync::Arc, thread::JoinHandle};

use serde_json::json;
use tiny_http::{Header, Method, Request, Response};

use super::{State, metrics, ready, views};

/// How many threads answer requests.
pub const THREADS: usize = 2;

/// Why the endpoint could not come up; one variant per failed operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The address could not be bound (port taken, address not on this machine).
    #[error("cannot listen on {addr} ({origin}): {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Where it came from: the conf key and file, or the flag.
        origin: String,
        /// The system's reason.
        reason: String,
    },
    /// The serving thread could not be started.
    #[error("cannot start the HTTP thread: {0}")]
    Thread(std::io::Error),
}

/// The bound endpoint; [`HttpServer::serve`] starts answering.
pub struct HttpServer {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    threads: Vec<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `addr`; `origin` names where it came from, for the error.
    pub fn bind(addr: SocketAddr, origin: &str) -> Result<HttpServer, HttpError> {
        let server = tiny_http::Server::http(addr).map_err(|e| HttpError::Bind {
            addr,
            origin: origin.to_string(),
            reason: e.to_string(),
        })?;
        let addr = server.server_addr().to_ip().unwrap_or(addr);
        Ok(HttpServer {
            server: Arc::new(server),
            addr,
            threads: Vec::new(),
        })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers requests from `state` on threads of its own until [`HttpServer::stop`].
    pub fn serve(&mut self, state: Arc<State>) -> Result<(), HttpError> {
        for i in 0..THREADS {
            let server = Arc::clone(&self.server);
            let state = Arc::clone(&state);
            let thread = std::thread::Builder::new()
                .name(format!("pseidon-http-{i}"))
                .spawn(move || {
                    for request in server.incoming_requests() {
                        handle(&state, request);
                    }
                })
                .map_err(HttpError::Thread)?;
            self.threads.push(thread);
        }
        tracing::info!(addr = %self.addr, "HTTP endpoint serving /metrics /health /ready /registry /groups");
        Ok(())
    }

    /// Stops answering and joins the threads (answers under way are finished first).
    /// Dropping the server does the same.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        // Each call unblocks one thread.
        for _ in &self.threads {
            self.server.unblock();
        }
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::warn!("an HTTP thread panicked");
            }
        }
    }
}

/// (status, content type, body) of one request.
/// `openmetrics`: the client asked for OpenMetrics (its `Accept` header).
pub fn answer(
    state: &State,
    method: &str,
    url: &str,
    openmetrics: bool,
) -> (u16, &'static str, String) {
    const JSON: &str = "application/json";
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let known = matches!(
        path,
        "/metrics" | "/health" | "/ready" | "/registry" | "/groups"
    );
    if !known {
        return (404, JSON, json!({"error": format!("no such path `{path}` (/metrics, /health, /ready, /registry, /groups)")}).to_string());
    }
    if method != "GET" {
        return (
            405,
            JSON,
            json!({"error": format!("method {method} not allowed; GET only")}).to_string(),
        );
    }
    match path {
        "/metrics" => match metrics::scrape(state, openmetrics) {
            Ok(text) if openmetrics => (200, metrics::OPENMETRICS_CONTENT_TYPE, text),
            Ok(text) => (200, metrics::TEXT_CONTENT_TYPE, text),
            Err(_) => (
                500,
                JSON,
                json!({"error": "cannot encode the metrics"}).to_string(),
            ),
        },
        "/health" if state.is_stopping() => (503, JSON, json!({"status": "stopping"}).to_string()),
        "/health" => (200, JSON, json!({"status": "alive"}).to_string()),
        "/ready" => {
            let r = ready::readiness(state);
            (if r.ready { 200 } else { 503 }, JSON, r.body.to_string())
        }
        "/registry" => (200, JSON, views::registry_json(state).to_string()),
        _ => match views::groups_json(state, query) {
            Ok(doc) => (200, JSON, doc.to_string()),
            Err(e) => {
                let code = match e {
                    views::GroupsError::BadQuery(_) => 400,
                    views::GroupsError::NoSource(_) => 404,
                    views::GroupsError::List(_) => 500,
                };
                (code, JSON, json!({"error": e.to_string()}).to_string())
            }
        },
    }
}

fn handle(state: &State, request: Request) {
    let method = match request.method() {
        Method::Get => "GET".to_string(),
        other => other.as_str().to_string(),
    };
    let openmetrics = request.headers().iter().any(|h| {
        h.field.equiv("Accept") && h.value.as_str().contains("application/openmetrics-text")
    });
    let (code, content_type, body) = answer(state, &method, request.url(), openmetrics);
    let body = state.scrubber.scrub(&body).into_owned();
    let mut response = Response::from_string(body).with_status_code(code);
    if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
        response.add_header(h);
    }
    if code == 405
        && let Ok(h) = Header::from_bytes(&b"Allow"[..], &b"GET"[..])
    {
        response.add_header(h);
    }
    if let Err(e) = request.respond(response) {
        tracing::debug!("HTTP response not sent: {e}");
    }
}
