import Control
import Fleet
import Foundation
import Logging
import NIOSSL
import Policy

/// What `fleet:` needs before the engine runs: the engine's own key, its etcd password and
/// TLS settings, and the entry it publishes. Everything that can be wrong with them is said
/// at start-up, with what to change.
enum FleetStart {
    static func member(_ configuration: Configuration, logger: Logger) throws -> FleetMember? {
        guard let settings = configuration.fleet else { return nil }
        let key: FleetKey
        do { key = try FleetKey.load(path: settings.keyFile) } catch { throw ControlError("\(error)") }
        var credentials: EtcdGateway.Credentials?
        if let user = settings.user, let file = settings.passwordFile {
            guard let password = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ControlError("cannot read etcd's password for user '\(user)' from \(file): create it (mode 600) or change fleet: password-file")
            }
            // Whoever reads it can write the fleet's directory (docs/fleet.md, "Who holds what").
            if let mode = (try? FileManager.default.attributesOfItem(atPath: file))?[.posixPermissions] as? Int, mode & 0o004 != 0 {
                throw ControlError("\(file) holds etcd's password for the fleet and every user can read it (mode \(String(mode, radix: 8))): chmod 600 \(file)")
            }
            credentials = .init(user: user, password: password.trimmingCharacters(in: .newlines))
        }
        var tls: TLSConfiguration?
        if settings.caFile != nil || settings.certificateFile != nil || settings.endpoints.contains(where: { $0.hasPrefix("https:") }) {
            var configuration = TLSConfiguration.makeClientConfiguration()
            do {
                if let ca = settings.caFile { configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca)) }
                if let certificate = settings.certificateFile, let privateKey = settings.certificateKeyFile {
                    configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
                    configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: privateKey, format: .pem))
                }
            } catch {
                throw ControlError("cannot read fleet: tls's files: \(error) (check ca, cert and key)")
            }
            tls = configuration
        }
        let name = settings.name ?? ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "vpm"
        guard FleetSettings.isValidName(name) else {
            throw ControlError("this host's name '\(name)' cannot name it in the fleet: set fleet: name (letters, digits, '-', '_', '.')")
        }
        let addresses = settings.addresses.isEmpty ? HostAddresses.inFleet(settings.network) : settings.addresses
        guard !addresses.isEmpty else {
            throw ControlError("this host has no address in the fleet's network \(settings.network): list them in fleet: addresses, or widen fleet: network")
        }
        let port = configuration.cooperation.listeners.first?.port ?? Cooperation.defaultPort
        let entry = EngineEntry(name: name, addresses: addresses.map(\.description), port: port,
                                virtualPorts: configuration.virtualPorts, publicKey: key.publicKeyText)
        let gateway = EtcdGateway(endpoints: settings.endpoints, credentials: credentials, tls: tls)
        logger.info("fleet: joining", metadata: ["name": "\(name)", "etcd": "\(settings.endpoints.joined(separator: ","))",
                                                 "addresses": "\(entry.addresses.joined(separator: ","))", "prefix": "\(settings.prefix)"])
        return FleetMember(settings: settings, name: name, key: key, own: entry, gateway: gateway, logger: logger)
    }

    /// The registry's accepting instances as the directory lists them.
    static func entries(_ instances: [Instance], engine: String) -> Set<InstanceEntry> {
        Set(instances.filter(\.accepting).map {
            InstanceEntry(engine: engine, aid: $0.aid.name, port: $0.initialPort.port, transport: $0.transport.name)
        })
    }
}
