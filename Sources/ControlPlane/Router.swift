public import ServiceContract

/// One of the host's own routes (identity, tenants, RBAC, tasks): its spec and a handler that gets
/// the host's ``ControlAPI``.
struct HostRoute: Sendable {
    let spec: RouteSpec
    let handler: @Sendable (ControlAPI, RouteContext) async throws -> APIResponse

    /// A host route; `responseSchema` names a component of the host's schemas (nil: no body for a
    /// 204, else any object).
    init(
        method: String, path: String, operationID: String, summary: String, access: Access, body: BodySchema?, success: Int,
        paginated: Bool = false, responseSchema: String?, revealsSecret: Bool = false, textResponse: String? = nil,
        handler: @escaping @Sendable (ControlAPI, RouteContext) async throws -> APIResponse
    ) {
        let response: ResponseBody =
            if let textResponse {
                .text(contentType: "text/plain", description: textResponse)
            } else if let responseSchema { .named(responseSchema) } else if success == 204 { .empty } else { .anyObject }
        var spec = RouteSpec(
            method: method, path: path, operationID: operationID, summary: summary, access: access, body: body, success: success,
            response: response, paginated: paginated)
        spec.revealsSecret = revealsSecret
        self.spec = spec
        self.handler = handler
    }
}

/// The routes of the host and of every service, built once: dispatch, `/openapi.json` and the RBAC
/// matrix all read it.
struct Router: Sendable {
    enum Handler: Sendable {
        case host(@Sendable (ControlAPI, RouteContext) async throws -> APIResponse)
        case service(@Sendable (RouteContext) async throws -> APIResponse)
    }

    struct Entry: Sendable {
        let spec: RouteSpec
        /// `core` or the service's name (the API reference groups by it).
        let owner: String
        let handler: Handler
    }

    let entries: [Entry]
    let services: [any CloudService]

    /// - Throws: ``ControlPlaneError`` when two routes of one method have the same template shape, or
    ///   two operations the same id.
    init(host: [HostRoute], services: [any CloudService]) throws(ControlPlaneError) {
        var entries = host.map { Entry(spec: $0.spec, owner: ServiceCatalog.hostName, handler: .host($0.handler)) }
        for service in services {
            entries += service.routes.map { Entry(spec: $0.spec, owner: service.name, handler: .service($0.handler)) }
        }
        var shapes: [String: String] = [:]
        var operations: [String: String] = [:]
        for entry in entries {
            let key = entry.spec.method + " " + entry.spec.shape
            if let other = shapes[key] {
                throw ControlPlaneError("the routes \(entry.spec.method) \(entry.spec.path) of \(entry.owner) and of \(other) collide")
            }
            shapes[key] = entry.owner
            if let other = operations[entry.spec.operationID] {
                throw ControlPlaneError("the operation id \(entry.spec.operationID) of \(entry.owner) is \(other)'s already")
            }
            operations[entry.spec.operationID] = entry.owner
        }
        self.entries = entries
        self.services = services
    }

    /// The route for `method` and `path` (HEAD finds GET), with its parameters; a template with more
    /// literal segments wins over one with parameters in their place. Else the methods the path
    /// accepts (empty: no such path).
    func find(method: String, path: String) -> Result<(Entry, [String: String]), Mismatch> {
        var best: (Entry, [String: String], literals: Int)?
        var allowed: [String] = []
        for entry in self.entries {
            guard let parameters = entry.spec.match(path) else { continue }
            guard entry.spec.method == method || (method == "HEAD" && entry.spec.method == "GET") else {
                if !allowed.contains(entry.spec.method) { allowed.append(entry.spec.method) }
                continue
            }
            let literals = entry.spec.segments.count - parameters.count
            if best == nil || literals > best!.literals { best = (entry, parameters, literals) }
        }
        if let best { return .success((best.0, best.1)) }
        return .failure(Mismatch(allowed: allowed))
    }

    struct Mismatch: Error {
        /// Methods the path accepts; empty when no route has the path.
        let allowed: [String]
    }
}
