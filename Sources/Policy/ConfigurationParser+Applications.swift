public import FlowTable
import Packet
import Yams

extension ConfigurationParser {
    static let applicationKeys = ["instances", "executables", "users", "groups"]

    /// Where a virtual port or an executable was first claimed, for "already used" messages.
    private struct Claim {
        let aid: AID
        let line: Int
        let detail: String
    }

    /// A virtual port is a real socket, so two instances may share the number only on
    /// different transports.
    private struct VirtualPortKey: Hashable {
        let port: UInt16
        let transport: TransportProtocol
    }

    func parseApplications(_ node: Node, initialPorts: [InitialPort], virtualPorts: ClosedRange<UInt16>) throws(ConfigurationError) -> [Application] {
        let pairs = try mapping(node, named: "'applications'", example: "{acme: {instances: {9000: 20017}}}")
        var applications: [Application] = []
        var aidLines: [AID: Int] = [:]
        var virtualPortClaims: [VirtualPortKey: Claim] = [:]
        var executableClaims: [String: Claim] = [:]

        for (key, applicationNode) in pairs {
            let aid = try aid(key)
            // Yams already rejects exact duplicate keys; this catches `123` next to `"123"`.
            if let line = aidLines[aid] {
                throw failure("AID '\(aid)' is defined twice (first at line \(line)); merge the two entries", at: key)
            }
            aidLines[aid] = line(of: key)
            let fields = try fields(of: applicationNode, named: "application '\(aid)'", allowed: Self.applicationKeys)

            var instances: [Instance] = []
            if let instancesNode = fields["instances"] {
                let instancePairs = try mapping(instancesNode, named: "'instances' of application '\(aid)'", example: "{9000: 20017}")
                var instanceLines: [InitialPort: Int] = [:]
                for (portNode, virtualNode) in instancePairs {
                    let initialPort = try initialPort(portNode)
                    guard initialPorts.contains(initialPort) else {
                        let listed = initialPorts.map(\.description).joined(separator: ", ")
                        throw failure("application '\(aid)' has an instance on initial port \(initialPort), which is not in 'ports' (\(listed)); add it to 'ports' or remove the instance", at: portNode)
                    }
                    if let line = instanceLines[initialPort] {
                        throw failure("application '\(aid)' has two instances on initial port \(initialPort) (first at line \(line)); an AID has one instance per initial port", at: portNode)
                    }
                    instanceLines[initialPort] = line(of: portNode)

                    let virtualText = try scalar(virtualNode, named: "the virtual port of \(aid) \(initialPort)")
                    let virtualPort = try value(at: virtualNode) { () throws(InvalidValue) in try DecimalNumber.port(virtualText[...]) }
                    guard virtualPorts.contains(virtualPort) else {
                        throw failure("virtual port \(virtualPort) of \(aid) \(initialPort) is outside 'virtual-ports' \(virtualPorts.lowerBound)-\(virtualPorts.upperBound); pick a port inside the range or widen it", at: virtualNode)
                    }
                    let claimKey = VirtualPortKey(port: virtualPort, transport: initialPort.transport)
                    if let claim = virtualPortClaims[claimKey] {
                        throw failure("virtual port \(virtualPort)/\(initialPort.transport.name) is already used by \(claim.aid) \(claim.detail) (line \(claim.line)); give each instance its own virtual port", at: virtualNode)
                    }
                    virtualPortClaims[claimKey] = Claim(aid: aid, line: line(of: virtualNode), detail: initialPort.description)
                    instances.append(Instance(aid: aid, initialPort: initialPort, virtualPort: virtualPort))
                }
            }

            var executables: [String] = []
            if let executablesNode = fields["executables"] {
                for item in try sequence(executablesNode, named: "executables", example: "[/usr/sbin/nginx]") {
                    let path = try scalar(item, named: "an executable path")
                    guard path.hasPrefix("/") else {
                        throw failure("executable '\(path)' of application '\(aid)' must be an absolute path, such as /usr/sbin/nginx", at: item)
                    }
                    if let claim = executableClaims[path] {
                        throw failure("executable \(path) is already given to AID '\(claim.aid)' (line \(claim.line)); an executable gets one AID", at: item)
                    }
                    executableClaims[path] = Claim(aid: aid, line: line(of: item), detail: path)
                    executables.append(path)
                }
            }
            var principals: [String: [String]] = [:]
            for key in ["users", "groups"] {
                guard let listNode = fields[key] else { continue }
                for item in try sequence(listNode, named: "'\(key)' of application '\(aid)'", example: key == "users" ? "[alice, 1001]" : "[acme-ops]") {
                    principals[key, default: []].append(try principal(item, named: key == "users" ? "a user of \(aid)" : "a group of \(aid)"))
                }
            }
            applications.append(Application(aid: aid, instances: instances, executables: executables,
                                            users: principals["users"] ?? [], groups: principals["groups"] ?? []))
        }
        return applications
    }
}
