import FlowTable

// Policy and FlowTable both name a type FlowTimeouts (seconds in the file, milliseconds in
// the table). Imports are per file, so each name is unambiguous in its own file.
typealias TableTimeouts = FlowTimeouts
