public import Database
public import Logging

/// What a handler gets: the task, the lease it runs under, and the queue for fenced writes.
public struct TaskContext: Sendable {
    public let task: TaskRecord
    public let lease: TaskLease
    public let queue: TaskQueue
    public let logger: Logger

    public init(task: TaskRecord, lease: TaskLease, queue: TaskQueue, logger: Logger) {
        self.task = task
        self.lease = lease
        self.queue = queue
        self.logger = logger
    }

    /// This attempt's number, from 1.
    public var attempt: Int { self.task.attempts }
    /// The fencing token of this attempt: larger than that of every earlier attempt. A handler that
    /// writes somewhere else SHOULD pass it along so that stale writers can be refused there.
    public var fence: Int64 { self.lease.fence }

    /// Runs `body` in a transaction that commits only while this attempt still holds the task
    /// (see ``TaskQueue/fenced(_:_:)``).
    @discardableResult
    public func fenced<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T {
        try await self.queue.fenced(self.lease, body)
    }
}

/// What a handler returns: the result to store and, optionally, its final database writes, which
/// commit in the same transaction as the completion (so they happen exactly once).
public struct TaskCompletion: Sendable {
    public var result: JSONValue
    public var commit: (@Sendable (any SQLSession) async throws -> Void)?

    public init(result: JSONValue = .null, commit: (@Sendable (any SQLSession) async throws -> Void)? = nil) {
        self.result = result
        self.commit = commit
    }
}

/// An error a handler throws to say how the attempt failed. Any other error counts as retryable.
public struct TaskFailure: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// Retrying cannot help (a malformed payload, a resource that is gone): the task dies now.
    public var permanent: Bool

    public static func permanent(_ message: String) -> Self { Self(message: message, permanent: true) }
    public static func retryable(_ message: String) -> Self { Self(message: message, permanent: false) }

    public var description: String { self.message }
}

/// The code that runs one kind of task.
///
/// Handlers MUST be idempotent: execution is at-least-once (a worker that dies mid-task is replaced
/// after its lease expires, and the next attempt starts over). Database effects made in
/// ``TaskCompletion/commit`` or in ``TaskContext/fenced(_:)`` are protected by the fence; effects
/// elsewhere SHOULD carry ``TaskContext/fence`` or be safe to repeat. A handler SHOULD stop soon when
/// cancelled: the runner cancels it when the lease is lost or at the end of a graceful shutdown.
public struct TaskHandler: Sendable {
    public let kind: String
    public let run: @Sendable (TaskContext) async throws -> TaskCompletion

    public init(kind: String, run: @escaping @Sendable (TaskContext) async throws -> TaskCompletion) {
        precondition(TaskQueue.isValidKind(kind), "task kind '\(kind)' is not of the form service.operation")
        self.kind = kind
        self.run = run
    }
}

/// A task the runners enqueue periodically, once per period across all processes: the period's
/// start is the idempotency key.
public struct TaskSchedule: Sendable {
    public var kind: String
    public var every: Duration
    public var payload: JSONValue

    public init(kind: String, every: Duration, payload: JSONValue = .object([])) {
        precondition(every >= .seconds(1), "a schedule's period must be at least a second")
        self.kind = kind
        self.every = every
        self.payload = payload
    }
}

