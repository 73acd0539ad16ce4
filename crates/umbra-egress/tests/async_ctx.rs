//! The client from inside a tokio runtime (the worker's host part is async).

use umbra_egress::testing::{Reply, TestServer};
use umbra_egress::{Client, Policy, Request};

#[test]
fn a_client_built_and_dropped_inside_a_tokio_runtime_works_from_a_blocking_thread() {
    let server = TestServer::http(|_| Reply::text(200, "ok")).expect("server starts");
    let url = server.url("/");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let client = Client::new().expect("client");
        let policy = Policy {
            allow_hosts: vec!["127.0.0.1".into()],
            allow_http: true,
            allow_private: true,
            ..Policy::default()
        };
        let client = tokio::task::spawn_blocking(move || {
            let (resp, _) = client.fetch([1; 32], &policy, Request::get(url)).expect("fetch");
            assert_eq!(resp.body, b"ok");
            client
        })
        .await
        .expect("join");
        drop(client);
    });
}
