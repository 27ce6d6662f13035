// The control API (core routes, SQLite) behind either listener, for bench/listeners.py:
//
//   ListenerBench serve ours|hummingbird HOST:PORT DATABASE
//   ListenerBench metrics N          the cost of recording N requests: RequestMetrics vs swift-prometheus
//
// Both listeners hand the same `APIRequest` to the same `ControlAPI.handle`, so the difference
// measured is the listener alone: HTTP parsing, body collection, response writing.
import ControlPlane
import Foundation
import HTTPServing
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Prometheus
import ServiceContract
import ServiceLifecycle

let arguments = CommandLine.arguments
guard arguments.count >= 3 else {
    FileHandle.standardError.write(Data("usage: ListenerBench serve ours|hummingbird HOST:PORT DATABASE | metrics N\n".utf8))
    exit(2)
}

switch arguments[1] {
case "serve":
    try await serve(listener: arguments[2], address: arguments[3], database: arguments[4])
case "metrics":
    metricsCost(count: Int(arguments[2]) ?? 1_000_000)
default:
    exit(2)
}

func serve(listener: String, address: String, database: String) async throws {
    var logger = Logger(label: "listener-bench")
    logger.logLevel = .warning
    var configuration = ControlPlaneConfiguration()
    configuration.apiAddress = address
    configuration.database = database
    configuration.runTasks = false
    let server = try await ControlServer(configuration: configuration, logger: logger)
    let services: [any Service]
    switch listener {
    case "ours":
        services = server.services()
    case "hummingbird":
        let parts = address.split(separator: ":")
        let api = server.api
        let responder = CallbackResponder<BasicRequestContext> { request, _ in
            var request = request
            let start = ContinuousClock.now
            let target = request.uri.string
            let limit = api.bodyLimit(method: request.method.rawValue, target: target)
            let body: ByteBuffer
            do {
                body = try await request.collectBody(upTo: limit)
            } catch {
                return respond(.error(.payloadTooLarge), requestID: "req_bench")
            }
            let requestID = request.headers[HTTPField.Name("X-Request-Id")!] ?? "req_bench"
            let (response, operation) = await api.handle(
                APIRequest(
                    method: request.method.rawValue, target: target,
                    headers: request.headers.map { ($0.name.rawName, $0.value) }, body: Array(body.readableBytesView),
                    requestID: requestID, clientAddress: "127.0.0.1"))
            let elapsed = ContinuousClock.now - start
            api.metrics.record(
                operation: operation, status: response.status,
                seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            return respond(response, requestID: requestID)
        }
        services = [
            Application(
                responder: responder,
                configuration: ApplicationConfiguration(address: .hostname(String(parts[0]), port: Int(parts[1])!)),
                logger: logger)
        ]
    default:
        throw ControlPlaneError("unknown listener \(listener)")
    }
    let group = ServiceGroup(
        configuration: ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
    try await group.run()
    await server.close()
}

/// The response with the headers ours writes (Content-Length is Hummingbird's).
@Sendable func respond(_ response: APIResponse, requestID: String) -> Response {
    var headers = HTTPFields()
    for (name, value) in response.headers {
        if let name = HTTPField.Name(name) { headers.append(HTTPField(name: name, value: value)) }
    }
    headers[HTTPField.Name("X-Request-Id")!] = requestID
    headers[.cacheControl] = "no-store"
    headers[.server] = "TheCloud"
    return Response(
        status: HTTPResponse.Status(code: response.status), headers: headers,
        body: ResponseBody(byteBuffer: ByteBuffer(bytes: response.body)))
}

/// Records `count` requests over 20 operations × 3 statuses into each, on one thread, and prints
/// nanoseconds per record and whether both expositions carry the same request total.
func metricsCost(count: Int) {
    let operations = (0..<20).map { "operation\($0)" }
    let statuses = [200, 404, 500]
    let bounds = RequestMetrics.latencyBounds

    var ours = RequestMetrics()
    let clock = ContinuousClock()
    let oursTime = clock.measure {
        for index in 0..<count {
            ours.record(operation: operations[index % 20], status: statuses[index % 3], seconds: Double(index % 1000) / 10_000)
        }
    }

    let registry = PrometheusCollectorRegistry()
    let prometheusTime = clock.measure {
        for index in 0..<count {
            let operation = operations[index % 20]
            registry.makeCounter(
                name: "cloud_api_requests_total", labels: [("operation", operation), ("status", String(statuses[index % 3]))]
            ).increment()
            registry.makeValueHistogram(
                name: "cloud_api_request_duration_seconds", labels: [("operation", operation)], buckets: bounds
            ).record(Double(index % 1000) / 10_000)
        }
    }
    var buffer: [UInt8] = []
    registry.emit(into: &buffer)
    let prometheusText = String(decoding: buffer, as: UTF8.self)
    let oursText = ours.render(prefix: "cloud_api", what: "control-plane API requests")
    func total(_ text: String) -> Int {
        text.split(separator: "\n").filter { $0.hasPrefix("cloud_api_requests_total{") }
            .compactMap { Int($0.split(separator: " ").last!) }.reduce(0, +)
    }
    func nanoseconds(_ duration: Duration) -> Double {
        (Double(duration.components.seconds) * 1e9 + Double(duration.components.attoseconds) / 1e9) / Double(count)
    }
    print(
        "BENCHJSON {\"count\": \(count), \"ours_ns\": \(nanoseconds(oursTime)), \"prometheus_ns\": \(nanoseconds(prometheusTime)), "
            + "\"ours_total\": \(total(oursText)), \"prometheus_total\": \(total(prometheusText)), "
            + "\"ours_bytes\": \(oursText.utf8.count), \"prometheus_bytes\": \(prometheusText.utf8.count)}")
}
