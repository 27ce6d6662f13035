public import ServiceContract
public import Database
import Foundation
import Hashing
public import Logging
public import ServiceLifecycle
import Synchronization

/// Settings of a ``TaskRunner``.
public struct TaskRunnerConfiguration: Sendable {
    /// Names this worker in leases and logs: `host:pid:random` by default, unique per process.
    public var owner: String = TaskRunnerConfiguration.defaultOwner()
    /// Tasks run at the same time by this process (16: the control plane's tasks mostly wait on other
    /// systems, engines, the object store, the database; with 4, ten instances created at once queued
    /// behind each other, see docs/benchmarks.md).
    public var concurrency: Int = 16 {
        willSet { precondition(newValue >= 1, "a task runner needs a concurrency of at least 1") }
    }
    /// How often to look for due tasks when the last look found none and nothing was enqueued in
    /// this process since (its ``TaskQueue/doorbell`` wakes the runner at once; 1 s).
    public var pollInterval: Duration = .seconds(1)
    /// How long a claim or a heartbeat holds a task (30 s): after a crash, the task waits this long
    /// before another worker takes it over.
    public var leaseDuration: Duration = .seconds(30)
    /// How often a running task's lease is renewed (10 s: two heartbeats may fail before the lease is
    /// in danger). When renewing fails until half an interval before the lease expires, the runner
    /// cancels the handler so that it never runs beside the worker that takes over.
    public var heartbeatInterval: Duration = .seconds(10)
    /// At a graceful shutdown, how long running tasks may still finish (10 s) before they are
    /// cancelled and their leases released, so that another process takes them over at once.
    public var shutdownGrace: Duration = .seconds(10)
    /// Backoff between failed attempts.
    public var retry = RetryPolicy()
    /// Housekeeping tasks to enqueue periodically.
    public var schedules: [TaskSchedule] = []

    public init() {}

    /// Checks that the times fit together.
    /// - Throws: ``ControlPlaneError``.
    public func validate() throws(ControlPlaneError) {
        guard self.leaseDuration >= .seconds(1) else { throw ControlPlaneError("the task lease must be at least a second") }
        guard self.heartbeatInterval > .zero, self.heartbeatInterval * 2 <= self.leaseDuration else {
            throw ControlPlaneError("the task heartbeat interval must be positive and at most half the lease")
        }
        guard self.pollInterval > .zero else { throw ControlPlaneError("the task poll interval must be positive") }
    }

    /// `host:pid:random`.
    public static func defaultOwner() -> String {
        "\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier):\(Hex.encode(SecureRandom.bytes(3)))"
    }
}

extension Duration {
    /// Whole milliseconds.
    var milliseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

/// Runs tasks from a ``TaskQueue``: claims due tasks of the kinds it has handlers for, up to its
/// concurrency, renews their leases while they run, and records their outcome (success, retry with
/// backoff, dead). Several runners, in one process or many, may share a queue.
///
/// At a graceful shutdown it stops claiming, lets running tasks finish for
/// ``TaskRunnerConfiguration/shutdownGrace``, then cancels the rest and releases their leases
/// (without counting the attempt). When cancelled outright, running tasks are abandoned and taken
/// over after their leases expire.
public final class TaskRunner: Service, Sendable {
    public let queue: TaskQueue
    public let configuration: TaskRunnerConfiguration
    let handlers: [String: TaskHandler]
    let logger: Logger
    private let random: Mutex<any RandomNumberGenerator>
    private let running = Mutex(0)
    private let stopping = Mutex(false)

    /// - Parameters:
    ///   - handlers: One per kind (a later one for the same kind replaces an earlier one).
    ///   - random: Jitter for the backoff (seed it in tests).
    public init(
        queue: TaskQueue, handlers: [TaskHandler], configuration: TaskRunnerConfiguration = TaskRunnerConfiguration(),
        logger: Logger, random: some RandomNumberGenerator & Sendable = SystemRandomNumberGenerator()
    ) {
        self.queue = queue
        self.configuration = configuration
        self.handlers = Dictionary(handlers.map { ($0.kind, $0) }, uniquingKeysWith: { $1 })
        self.logger = logger
        self.random = Mutex<any RandomNumberGenerator>(random)
    }

    /// The tasks running now.
    public var runningCount: Int { self.running.withLock { $0 } }

    public func run() async throws {
        let kinds = self.handlers.keys.sorted()
        let limit = self.configuration.concurrency
        self.logger.info(
            "task runner started", metadata: ["owner": "\(self.configuration.owner)", "kinds": "\(kinds.joined(separator: ","))"])
        await withDiscardingTaskGroup { group in
            var enqueuedSlots: [String: Int64] = [:]
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                await self.enqueueScheduled(&enqueuedSlots)
                // Read before claiming: a task enqueued after this look rings the doorbell.
                let rung = await self.queue.doorbell.generation(TaskQueue.doorbellKey)
                let free = limit - self.runningCount
                var claimed: [TaskRecord] = []
                if free > 0 {
                    do {
                        claimed = try await self.queue.claim(
                            owner: self.configuration.owner, kinds: kinds, limit: free,
                            leaseDuration: self.configuration.leaseDuration.milliseconds)
                    } catch {
                        self.logger.warning("claiming tasks failed", metadata: ["error": "\(error)"])
                    }
                }
                for task in claimed {
                    self.running.withLock { $0 += 1 }
                    group.addTask {
                        await self.execute(task)
                        self.running.withLock { $0 -= 1 }
                    }
                }
                // A full batch: more may be due; look again at once.
                if free > 0 && claimed.count == free { continue }
                // Until the poll interval ends or a task is enqueued in this process (other
                // processes' tasks wait for the poll).
                let interval = self.configuration.pollInterval
                let queue = self.queue
                do {
                    try await cancelWhenGracefulShutdown {
                        await queue.doorbell.wait(TaskQueue.doorbellKey, seen: rung, timeout: interval)
                        try Task.checkCancellation()
                    }
                } catch {
                    break
                }
            }
            // Stop claiming; give running tasks the grace period, then stop them.
            let deadline = ContinuousClock.now + self.configuration.shutdownGrace
            while self.runningCount > 0 && ContinuousClock.now < deadline && !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(20))
            }
            if self.runningCount > 0 {
                self.logger.notice("stopping running tasks to shut down", metadata: ["tasks": "\(self.runningCount)"])
                self.stopping.withLock { $0 = true }
            }
        }
        self.logger.info("task runner stopped", metadata: ["owner": "\(self.configuration.owner)"])
    }

    private func enqueueScheduled(_ enqueuedSlots: inout [String: Int64]) async {
        let now = self.queue.now()
        for schedule in self.configuration.schedules {
            let period = max(1, schedule.every.milliseconds)
            let slot = now - now % period
            guard enqueuedSlots[schedule.kind] != slot else { continue }
            do {
                try await self.queue.enqueue(
                    NewTask(
                        kind: schedule.kind, tenantID: TaskQueue.systemTenant, payload: schedule.payload,
                        idempotencyKey: "schedule:\(slot)", runAt: slot, maxAttempts: 3))
                enqueuedSlots[schedule.kind] = slot
            } catch {
                self.logger.warning("enqueuing a scheduled task failed", metadata: ["kind": "\(schedule.kind)", "error": "\(error)"])
            }
        }
    }

    private enum Outcome: Sendable {
        case completed(TaskCompletion)
        /// The handler threw: its message, whether retrying is pointless, whether it was cancelled.
        case failed(String, permanent: Bool, cancelled: Bool)
        case leaseLost(String)
        case stopped
    }

    /// Runs one claimed task to its outcome and records it.
    private func execute(_ task: TaskRecord) async {
        guard let lease = task.lease, let handler = self.handlers[task.kind] else { return }
        var taskLogger = self.logger
        taskLogger[metadataKey: "task-id"] = "\(task.id)"
        taskLogger[metadataKey: "kind"] = "\(task.kind)"
        taskLogger[metadataKey: "attempt"] = "\(task.attempts)"
        let logger = taskLogger
        let context = TaskContext(task: task, lease: lease, queue: self.queue, logger: logger)
        let started = ContinuousClock.now
        let outcome = await withTaskGroup(of: Outcome.self) { group in
            group.addTask {
                do {
                    return .completed(try await handler.run(context))
                } catch let failure as TaskFailure {
                    return .failed(failure.message, permanent: failure.permanent, cancelled: false)
                } catch {
                    return .failed(String(describing: error), permanent: false, cancelled: error is CancellationError)
                }
            }
            group.addTask { await self.keepLease(lease, logger: logger) }
            let first = await group.next() ?? .stopped
            group.cancelAll()
            return first
        }
        let milliseconds = (ContinuousClock.now - started).milliseconds
        switch outcome {
        case .completed(let completion):
            await self.record(lease, logger: logger) {
                try await self.queue.complete(lease, result: completion.result, commit: completion.commit)
                // Scheduled housekeeping (host checks every 5 s) would drown the log at info.
                let scheduled = self.configuration.schedules.contains { $0.kind == task.kind } && task.tenantID == TaskQueue.systemTenant
                logger.log(level: scheduled ? .debug : .info, "task succeeded", metadata: ["ms": "\(milliseconds)"])
            } onFailure: { error in
                // The final writes failed: an ordinary failed attempt.
                let failure = error as? TaskFailure
                try await self.fail(task, lease, message: failure?.message ?? "\(error)", permanent: failure?.permanent ?? false, logger: logger)
            }
        case .failed(_, _, cancelled: true) where Task.isCancelled || self.stopping.withLock({ $0 }):
            await self.release(lease, logger: logger)
        case .failed(let message, let permanent, _):
            await self.record(lease, logger: logger) {
                try await self.fail(task, lease, message: message, permanent: permanent, logger: logger)
            } onFailure: { _ in }
        case .leaseLost(let reason):
            logger.warning("task stopped: its lease was lost; another worker runs it", metadata: ["reason": "\(reason)"])
        case .stopped:
            await self.release(lease, logger: logger)
        }
    }

    private func fail(_ task: TaskRecord, _ lease: TaskLease, message: String, permanent: Bool, logger: Logger) async throws {
        let delay = self.random.withLock { random in self.configuration.retry.delay(afterAttempt: task.attempts, using: &random) }
        let record = try await self.queue.fail(lease, error: message, retryAt: self.queue.now() + delay, permanent: permanent)
        if record.state == .dead {
            logger.error("task dead", metadata: ["error": "\(message)", "attempts": "\(record.attempts)"])
        } else {
            logger.warning("task failed; retrying", metadata: ["error": "\(message)", "retry-in-ms": "\(delay)"])
        }
    }

    /// Writes an outcome, retrying a few times while the database is unavailable (if it stays so, the
    /// lease expires and the task runs again: at-least-once).
    private func record(
        _ lease: TaskLease, logger: Logger, _ write: () async throws -> Void, onFailure: (any Error) async throws -> Void
    ) async {
        for attempt in 1...5 {
            do {
                try await write()
                return
            } catch let error as TaskQueueError where error.isLeaseLost {
                logger.warning("task outcome discarded: its lease was lost and another worker took it over")
                return
            } catch let error as TaskQueueError where error.isUnavailable && attempt < 5 {
                logger.warning("recording the task outcome failed; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(200 * attempt))
            } catch {
                do {
                    try await onFailure(error)
                } catch {
                    logger.error("recording the task outcome failed; it will run again after its lease expires", metadata: ["error": "\(error)"])
                }
                return
            }
        }
    }

    private func release(_ lease: TaskLease, logger: Logger) async {
        do {
            try await self.queue.release(lease)
            logger.notice("task released for another worker (shutting down)")
        } catch {
            logger.warning("releasing the task failed; another worker takes it over after its lease expires", metadata: ["error": "\(error)"])
        }
    }

    /// Renews the lease every heartbeat interval until cancelled (the handler finished). Returns
    /// `.leaseLost` when the fence is gone or renewing kept failing until shortly before the lease
    /// expires, and `.stopped` at the end of a graceful shutdown's grace period.
    private func keepLease(_ initial: TaskLease, logger: Logger) async -> Outcome {
        var lease = initial
        let interval = self.configuration.heartbeatInterval
        let margin = interval.milliseconds / 2
        var nextBeat = ContinuousClock.now + interval
        while true {
            if self.stopping.withLock({ $0 }) { return .stopped }
            if ContinuousClock.now >= nextBeat {
                do {
                    lease = try await self.queue.heartbeat(lease, leaseDuration: self.configuration.leaseDuration.milliseconds)
                    nextBeat = ContinuousClock.now + interval
                } catch let error as TaskQueueError where error.isLeaseLost {
                    return .leaseLost(error.detail)
                } catch {
                    logger.warning("renewing the task lease failed", metadata: ["error": "\(error)"])
                    nextBeat = ContinuousClock.now + .seconds(1)
                }
            }
            if self.queue.now() >= lease.expiresAt - margin {
                return .leaseLost("the lease could not be renewed before it expired")
            }
            do {
                try await Task.sleep(for: .milliseconds(50))
            } catch {
                return .stopped
            }
        }
    }
}
