//! gRPC through the gateway with a real tonic client: GRPCRoute method
//! matches to h2c `strait echo` backends, statuses in trailers, streaming
//! both ways, the health service, and strait's own UNIMPLEMENTED.

mod common;
use common::*;
use std::future::Future;
use std::time::Duration;
use strait_echo::pb::grpcecho::grpc_echo_client::GrpcEchoClient;
use strait_echo::pb::grpcecho::{EchoRequest, EchoResponse, Header};
use strait_echo::pb::health::health_check_response::ServingStatus;
use strait_echo::pb::health::health_client::HealthClient;
use strait_echo::pb::health::HealthCheckRequest;
use strait_echo::pb::stream::stream_client::StreamClient;
use strait_echo::pb::stream::{CountRequest, Msg};
use tonic::Code;

const ECHO: &str = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";
const HOST: &str = "grpc.example.com";

fn grpc_route() -> String {
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: echo}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: ["{HOST}"]
  rules:
  - matches: [{{method: {{service: {ECHO}, method: Echo}}}}]
    backendRefs: [{{name: a, port: 80}}]
  - matches: [{{method: {{service: {ECHO}, method: EchoTwo}}}}]
    backendRefs: [{{name: b, port: 80}}]
  - matches: [{{method: {{service: {ECHO}, method: EchoThree}}}}]
    backendRefs: [{{name: a, port: 80}}]
  - matches: [{{method: {{service: strait.echo.v1.Stream}}}}]
    backendRefs: [{{name: b, port: 80}}]
  - matches: [{{method: {{service: grpc.health.v1.Health}}}}]
    backendRefs: [{{name: a, port: 80}}]
"#
    )
}

struct Setup {
    port: u16,
    _gw: Gateway,
    _backends: Vec<Echo>,
    _dir: TempDir,
}

async fn setup() -> Setup {
    let (a, b) = (echo("a", "a-0"), echo("b", "b-0"));
    let port = free_port();
    let dir = TempDir::new();
    let mut yaml = gateway_yaml(port);
    yaml += &service_yaml("a", a.port, Some("kubernetes.io/h2c"));
    yaml += &service_yaml("b", b.port, Some("kubernetes.io/h2c"));
    yaml += &grpc_route();
    dir.write("all.yaml", &yaml);
    let gw = Gateway::start(&dir).await;
    Setup {
        port,
        _gw: gw,
        _backends: vec![a, b],
        _dir: dir,
    }
}

/// One HTTP/2 (prior knowledge) connection to the gateway, as a tonic
/// `GrpcService`: clients built on it send `:authority` from their origin.
use strait_identity::service::H2;

impl Setup {
    async fn channel(&self) -> H2 {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        H2(h2_over(tcp).await)
    }
}

fn origin() -> http::Uri {
    http::Uri::from_static("http://grpc.example.com")
}

/// Fails the test instead of hanging when the gateway loses something.
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

fn header(key: &str, value: &str) -> Header {
    Header {
        key: key.into(),
        value: value.into(),
    }
}

#[tokio::test]
async fn unary_calls_are_routed_by_method() {
    let s = setup().await;
    let mut client = GrpcEchoClient::with_origin(s.channel().await, origin());
    for (method, want_service) in [("Echo", "a"), ("EchoTwo", "b")] {
        let mut req = tonic::Request::new(EchoRequest {});
        req.metadata_mut()
            .insert("x-test-case", method.parse().expect("metadata"));
        let response = within(method, async {
            match method {
                "Echo" => client.echo(req).await,
                _ => client.echo_two(req).await,
            }
        })
        .await
        .unwrap_or_else(|status| panic!("{method}: {status:?}"))
        .into_inner();
        let EchoResponse {
            assertions: Some(a),
            request: Some(_),
        } = response
        else {
            panic!("{method}: incomplete answer {response:?}");
        };
        assert_eq!(a.fully_qualified_method, format!("/{ECHO}/{method}"));
        assert_eq!(a.authority, HOST, "{method}: :authority kept");
        let context = a.context.expect("context");
        assert_eq!(context.service_name, want_service, "{method}");
        assert_eq!(context.pod, format!("{want_service}-0"));
        assert_eq!(context.namespace, "default");
        assert!(
            a.headers.contains(&header("x-test-case", method)),
            "{method}: metadata arrives: {:?}",
            a.headers
        );
        assert!(
            a.headers
                .contains(&header("content-type", "application/grpc")),
            "{:?}",
            a.headers
        );
        assert!(
            a.headers.contains(&header("te", "trailers")),
            "TE: trailers reaches the h2c backend: {:?}",
            a.headers
        );
        assert!(
            a.headers
                .iter()
                .all(|h| h.key == h.key.to_ascii_lowercase()),
            "{:?}",
            a.headers
        );
    }
}

#[tokio::test]
async fn backend_status_arrives_in_trailers() {
    let s = setup().await;
    let mut client = GrpcEchoClient::with_origin(s.channel().await, origin());
    let status = within("EchoThree", client.echo_three(EchoRequest {}))
        .await
        .expect_err("EchoThree is never implemented");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert_eq!(
        status.message(),
        "EchoThree is not implemented by echo pod a-0",
        "the backend's status, not strait's"
    );
}

#[tokio::test]
async fn unmatched_method_is_unimplemented_from_strait() {
    let s = setup().await;
    let mut grpc = tonic::client::Grpc::with_origin(s.channel().await, origin());
    within("ready", grpc.ready()).await.expect("ready");
    let status = within(
        "EchoFour",
        grpc.unary::<EchoRequest, EchoResponse, _>(
            tonic::Request::new(EchoRequest {}),
            http::uri::PathAndQuery::from_static(
                "/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/EchoFour",
            ),
            tonic_prost::ProstCodec::default(),
        ),
    )
    .await
    .expect_err("no route matches EchoFour");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert_eq!(status.message(), "strait: no route matched");

    // The same method on a host no route has: strait again.
    let mut other = GrpcEchoClient::with_origin(
        s.channel().await,
        http::Uri::from_static("http://other.example.com"),
    );
    let status = within("Echo elsewhere", other.echo(EchoRequest {}))
        .await
        .expect_err("no route for the host");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert_eq!(status.message(), "strait: no route matched");
}

/// A client stream fed by hand, so each message is sent only after the
/// previous one came back.
fn outbound() -> (
    tokio::sync::mpsc::Sender<Msg>,
    impl futures_util::Stream<Item = Msg> + Send + 'static,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let stream =
        futures_util::stream::unfold(rx, |mut rx: tokio::sync::mpsc::Receiver<Msg>| async move {
            rx.recv().await.map(|m| (m, rx))
        });
    (tx, stream)
}

#[tokio::test]
async fn bidi_stream_echoes_each_message_as_it_arrives() {
    let s = setup().await;
    let mut client = StreamClient::with_origin(s.channel().await, origin());
    let (tx, stream) = outbound();
    let mut inbound = within("Chat", client.chat(stream))
        .await
        .expect("Chat starts")
        .into_inner();
    for seq in 0..5u32 {
        let text = format!("hello {seq}");
        tx.send(Msg {
            text: text.clone(),
            seq,
            pod: String::new(),
        })
        .await
        .expect("send");
        // The next message is not sent before this one is back: the
        // gateway must stream both ways, not buffer.
        let back = within("echo", inbound.message())
            .await
            .expect("no error")
            .expect("a message back");
        assert_eq!((back.text.as_str(), back.seq), (text.as_str(), seq));
        assert_eq!(back.pod, "b-0");
    }
    drop(tx);
    let end = within("end", inbound.message())
        .await
        .expect("clean end, OK");
    assert!(end.is_none(), "{end:?}");
}

#[tokio::test]
async fn stream_ends_with_the_status_in_trailers() {
    let s = setup().await;
    let mut client = StreamClient::with_origin(s.channel().await, origin());
    let (tx, stream) = outbound();
    let mut req = tonic::Request::new(stream);
    req.metadata_mut().insert(
        "x-echo-fail",
        "stopped on purpose".parse().expect("metadata"),
    );
    let mut inbound = within("Chat", client.chat(req))
        .await
        .expect("Chat starts")
        .into_inner();
    for seq in 0..3u32 {
        tx.send(Msg {
            text: format!("m{seq}"),
            seq,
            pod: String::new(),
        })
        .await
        .expect("send");
        let back = within("echo", inbound.message())
            .await
            .expect("no error yet")
            .expect("a message back");
        assert_eq!(back.seq, seq);
    }
    drop(tx);
    let status = within("end", inbound.message())
        .await
        .expect_err("the stream ends with an error status");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(status.message(), "stopped on purpose");

    // Server streaming: the messages, then the status.
    let mut req = tonic::Request::new(CountRequest { n: 3 });
    req.metadata_mut()
        .insert("x-echo-fail", "counted".parse().expect("metadata"));
    let mut inbound = within("Count", client.count(req))
        .await
        .expect("Count starts")
        .into_inner();
    for seq in 0..3 {
        let m = within("count", inbound.message())
            .await
            .expect("no error yet")
            .expect("a message");
        assert_eq!(m.seq, seq);
    }
    let status = within("end", inbound.message())
        .await
        .expect_err("the stream ends with an error status");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(status.message(), "counted");
}

#[tokio::test]
async fn server_stream_delivers_every_message() {
    let s = setup().await;
    let mut client = StreamClient::with_origin(s.channel().await, origin());
    let mut inbound = within("Count", client.count(CountRequest { n: 100 }))
        .await
        .expect("Count starts")
        .into_inner();
    let mut seqs = Vec::new();
    while let Some(m) = within("count", inbound.message()).await.expect("no error") {
        assert_eq!(m.text, format!("message {}", m.seq));
        assert_eq!(m.pod, "b-0");
        seqs.push(m.seq);
    }
    assert_eq!(seqs, (0..100).collect::<Vec<u32>>());
}

#[tokio::test]
async fn health_check_through_the_gateway() {
    let s = setup().await;
    let mut client = HealthClient::with_origin(s.channel().await, origin());
    for service in ["", ECHO] {
        let r = within(
            "Check",
            client.check(HealthCheckRequest {
                service: service.into(),
            }),
        )
        .await
        .unwrap_or_else(|status| panic!("{service:?}: {status:?}"))
        .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
    let status = within(
        "Check unknown",
        client.check(HealthCheckRequest {
            service: "no.such.Service".into(),
        }),
    )
    .await
    .expect_err("unknown services are not found");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}
