public import ServiceContract
import Foundation
import Logging

/// `/tasks`: the tenant's background tasks.
extension ControlAPI {
    func listTasks(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let query = context.request.query
        var state: TaskState?
        if let text = query["state"] {
            guard let parsed = TaskState(rawValue: text) else {
                throw APIError.invalidRequest(
                    "state must be one of \(TaskState.allCases.map(\.rawValue).joined(separator: ", ")), not \"\(text)\"")
            }
            state = parsed
        }
        let page = try context.page()
        var before: (createdAt: Int64, id: String)?
        if let after = page.after {
            let parts = after.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, let createdAt = Int64(parts[0]) else {
                throw APIError.invalidRequest("next_token is not a token this API handed out; start again without it")
            }
            before = (createdAt, String(parts[1]))
        }
        let kind = query["kind"].flatMap { $0.isEmpty ? nil : $0 }
        let fetched = try await self.tasksCall {
            try await self.tasks.tasks(tenantID: caller.tenantID, state: state, kind: kind, limit: page.fetchLimit, before: before)
        }
        let (tasks, next) = page.finish(fetched) { "\($0.createdAt):\($0.id)" }
        return .json(200, .object([("tasks", .array(tasks.map(Self.json))), Self.next(next)]))
    }

    func getTask(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let id = context.parameter("id")
        guard let task = try await self.tasksCall({ try await self.tasks.task(id: id, tenantID: caller.tenantID) }) else {
            throw APIError.notFound("no task \(id) in this tenant")
        }
        return .json(200, Self.json(task))
    }

    func retryTask(_ context: RouteContext) async throws -> APIResponse {
        let caller = try context.authenticated
        let id = context.parameter("id")
        do {
            let task = try await self.tasks.retry(id: id, tenantID: caller.tenantID)
            self.logger.info("task retried", metadata: ["request-id": "\(context.request.requestID)", "task-id": "\(id)"])
            return .json(200, Self.json(task))
        } catch let error as TaskQueueError where error.isNotFound {
            throw APIError.notFound("no task \(id) in this tenant")
        } catch let error as TaskQueueError where error.isNotDead {
            throw APIError.conflict("task_not_dead", error.detail)
        } catch let error as TaskQueueError where error.isUnavailable {
            throw ControlStoreError.unavailable(error.detail)
        }
    }

    /// Database failures of the queue become 503s like the store's.
    private func tasksCall<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as TaskQueueError where error.isUnavailable {
            throw ControlStoreError.unavailable(error.detail)
        }
    }

    static func timeMilliseconds(_ milliseconds: Int64) -> JSONValue {
        .string(Date(timeIntervalSince1970: TimeInterval(milliseconds) / 1000).formatted(.iso8601))
    }

    static func json(_ task: TaskRecord) -> JSONValue {
        let optionalTime: (Int64?) -> JSONValue = { $0.map(Self.timeMilliseconds) ?? .null }
        var lease: JSONValue = .null
        if let current = task.lease {
            lease = .object([
                ("owner", .string(current.owner)), ("fence", .int(current.fence)), ("expires_at", Self.timeMilliseconds(current.expiresAt)),
            ])
        }
        return .object([
            ("id", .string(task.id)), ("kind", .string(task.kind)), ("state", .string(task.state.rawValue)),
            ("payload", task.payload), ("result", task.result ?? .null),
            ("idempotency_key", task.idempotencyKey.map { .string($0) } ?? .null),
            ("attempts", .int(Int64(task.attempts))), ("max_attempts", .int(Int64(task.maxAttempts))),
            ("last_error", task.lastError.map { .string($0) } ?? .null),
            ("run_at", Self.timeMilliseconds(task.runAt)), ("created_at", Self.timeMilliseconds(task.createdAt)),
            ("updated_at", Self.timeMilliseconds(task.updatedAt)), ("started_at", optionalTime(task.startedAt)),
            ("finished_at", optionalTime(task.finishedAt)), ("lease", lease),
        ])
    }
}
