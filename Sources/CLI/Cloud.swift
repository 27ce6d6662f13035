import ArgumentParser

/// The `cloud` command: the daemons and the client commands.
@main
struct Cloud: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cloud",
        abstract: "The Cloud: an open-source cloud platform you run on your own hosts.",
        discussion: "Reference: docs/cli.md. Shell completion: `cloud completion --help`.",
        version: "0.1.0",
        subcommands: [Dev.self, Server.self, Node.self, Agent.self, Storage.self, Auth.self, Roles.self, Tenants.self, Tasks.self, Secrets.self, Queues.self, Notify.self, Cron.self, Images.self, InstanceTypes.self, Instances.self, Deployments.self, Autoscaling.self, Volumes.self, Snapshots.self, SSHKeys.self, Hosts.self, MasterKeyCommand.self, ConfigCommand.self, Completion.self, OpenAPICommand.self]
    )
}
