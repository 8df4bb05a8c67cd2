public import FlowTable
extension Configuration {
    /// The built-in configuration of `vpm demo`: two applications, acme and globex, each with
    /// one instance on 9000/tcp, and client sources from 198.18.0.0/15 (RFC 2544 test addresses).
    public static let example = """
        # vpm configuration (the built-in example used by `vpm demo`)
        queue: 0                      # NFQUEUE number (optional, default 0)
        queues: auto                  # queues from it, a thread each (optional, default auto: one per CPU)
        virtual-ports: 20000-20999    # range the virtual ports come from (required)
        ports:                        # the multiplexed initial ports (required, non-empty)
          - 9000                      # = 9000/tcp
          - 5353/udp
        applications:                 # AID -> its instances
          acme:
            instances:
              9000: 20017             # initial port: virtual port
          globex:
            instances:
              9000: 20018
            executables: [/usr/sbin/nginx]   # processes of these executables get this AID
        sources:                      # which clients belong to which AID (source-routed mode)
          - from: 198.18.1.0/24       # CIDR prefix
            aid: acme
          - from: 198.18.2.0/24
            aid: globex
          - from: 198.18.3.7          # single address, any source port
            aid: globex
          - from: 198.18.4.1:5555     # address and source port
            aid: acme
        flows:                        # optional; these are the defaults
          capacity: 262144
          timeouts:                   # whole seconds, or a number with s, m, h or d
            opening: 30s
            established: 5d
            closing: 2m
            closed: 10s
            udp: 30s
            udp-stream: 3m

        """
}
