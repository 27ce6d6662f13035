import ArgumentParser
import ControlPlane
import Foundation
import Logging
import Secrets
import ServiceContract
import Storage

/// Options of the control plane shared by `cloud dev` and `cloud server`: platform operators, tenant
/// quota defaults and mail delivery.
struct ControlPlaneOptions: ParsableArguments {
    @Option(name: .customLong("platform-admin"), help: "A platform operator's email (may set any tenant's quotas); repeat for several.")
    var platformAdmins: [String] = []

    @Option(
        name: .customLong("quota"),
        help: "A tenant quota default, RESOURCE=LIMIT (api_keys, members, buckets, storage_bytes, secrets, queues, topics, subscriptions, schedules); repeat for several.")
    var quotas: [String] = []

    @Option(help: "SMTP relay for password-reset mail (plain SMTP, no TLS or authentication: a local MTA).")
    var smtpHost: String?

    @Option(help: "Port of the SMTP relay.")
    var smtpPort: Int = 25

    @Option(help: "Sender address of the control plane's mail.")
    var smtpFrom: String = "The Cloud <no-reply@localhost>"

    @Option(help: "Write mail as .eml files to this directory instead of sending it (cloud dev: <data-dir>/outbox unless --smtp-host).")
    var outbox: String?

    @Option(
        help: ArgumentHelp(
            "The master key of the secrets service: a file made (0600) on first start unless $CLOUD_MASTER_KEY is set (cloud dev: <data-dir>/master.key, cloud server: ./cloud-data/master.key).",
            discussion: "Every control-plane process of one deployment needs the same key; back it up: secrets cannot be read without it."))
    var masterKeyFile: String?

    func validate() throws {
        _ = try self.quotaDefaults()
        if let host = self.smtpHost, host.isEmpty { throw ValidationError("--smtp-host must not be empty") }
        guard (1...65535).contains(self.smtpPort) else { throw ValidationError("--smtp-port must be 1 to 65535") }
        if self.smtpHost != nil && self.outbox != nil { throw ValidationError("give --smtp-host or --outbox, not both") }
        for email in self.platformAdmins where !email.contains("@") {
            throw ValidationError("--platform-admin '\(email)' is not an email address")
        }
    }

    func quotaDefaults() throws -> QuotaDefaults {
        var defaults = QuotaDefaults()
        for item in self.quotas {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let limit = Int64(parts[1]), limit >= 0 else {
                throw ValidationError("--quota '\(item)' is not RESOURCE=LIMIT with a limit of 0 or more")
            }
            let resource = QuotaResource(rawValue: parts[0])
            let known = HostedServices.quotaResources
            guard known.contains(resource) else {
                throw ValidationError("--quota: unknown resource '\(parts[0])' (known: \(known.map(\.rawValue).joined(separator: ", ")))")
            }
            defaults.limits[resource] = limit
        }
        return defaults
    }

    /// The secrets service's master key: `$CLOUD_MASTER_KEY`, else the file (made on first use).
    func masterKey(defaultFile: String, logger: Logger) throws -> MasterKey {
        let file = self.masterKeyFile ?? defaultFile
        let directory = (file as NSString).deletingLastPathComponent
        if !directory.isEmpty { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        do {
            let environment = ProcessInfo.processInfo.environment["CLOUD_MASTER_KEY"].flatMap { $0.isEmpty ? nil : $0 }
            let (key, created) = try MasterKey.load(environmentValue: environment, file: file)
            if created {
                logger.notice("master key created: back it up, secrets cannot be read without it", metadata: ["file": "\(file)", "key-id": "\(key.id)"])
            }
            return key
        } catch {
            throw ValidationError("the secrets master key: \(error.description)")
        }
    }

    /// Applies the options; `defaultOutbox` is where mail goes when neither SMTP nor an outbox is given.
    func apply(to configuration: inout ControlPlaneConfiguration, defaultOutbox: String?) throws {
        configuration.api.platformAdmins = Set(self.platformAdmins.map { $0.trimmingCharacters(in: .whitespaces).lowercased() })
        configuration.quotaDefaults = try self.quotaDefaults()
        configuration.api.mailFrom = self.smtpFrom
        if let host = self.smtpHost {
            configuration.api.mail = .smtp(host: host, port: self.smtpPort)
        } else if let directory = self.outbox ?? defaultOutbox {
            configuration.api.mail = .outbox(directory: directory)
        }
    }
}
