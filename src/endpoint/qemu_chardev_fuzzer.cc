// libFuzzer target for ParseQemuChardev (--qemu-chardev values). Traps unless an
// accepted chardev yields an endpoint whose description parses back as the same
// --listen/--connect endpoint, and unless the QEMU arguments rngmux prints for that
// endpoint (given a bound port) name a chardev that parses back to it.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "endpoint/endpoint_spec.h"
#include "endpoint/qemu_chardev.h"

namespace {

void Check(bool condition) {
  if (!condition) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace rngmux;
  // NUL bytes included: the parser must refuse them ("host=::1\0junk" is not "::1").
  const bool has_nul = size > 0 && std::memchr(data, 0, size) != nullptr;
  const std::string text(reinterpret_cast<const char*>(data), size);
  const Result<EndpointSpec> spec = ParseQemuChardev(text);
  if (!spec.ok()) {
    Check(!spec.status().message().empty());
    return 0;
  }
  Check(!has_nul);
  const std::string described = spec->Describe();
  const Result<EndpointSpec> again = ParseEndpointSpec(spec->role, described);
  Check(again.ok());
  Check(again->Describe() == described);

  // What `serve` prints for QEMU once the endpoint is bound: the chardev in it must
  // lead back to an endpoint at the same address.
  if (spec->transport == TransportKind::kUdp) return 0;
  EndpointSpec bound = spec.value();
  if (bound.transport == TransportKind::kTcp && bound.port == 0) bound.port = 4555;
  const std::string arguments = QemuArgumentsFor(bound);
  // What --qemu-chardev takes of it: for rng-egd everything before QEMU's rng-egd object
  // (the -chardev, after the tls-creds-x509 object of a TLS endpoint); for vhost-user the
  // -chardev and the -device after it (not the shared memory before).
  const std::size_t chardev = arguments.find("-chardev ");
  Check(chardev != std::string::npos);
  std::string given;
  if (bound.transport == TransportKind::kVhostUser) {
    given = arguments.substr(chardev);
  } else {
    const std::size_t end = arguments.find(" -object rng-egd", chardev);
    Check(end != std::string::npos);
    given = arguments.substr(0, end);
  }
  const Result<EndpointSpec> back = ParseQemuChardev(given);
  if (bound.transport == TransportKind::kUnix) {
    // A path with a comma or a space is not written back escaped; nothing to compare.
    if (bound.path.find_first_of(", ") != std::string::npos) return 0;
  }
  Check(back.ok());
  Check(back->role == bound.role && back->transport == bound.transport);
  Check(back->path == bound.path && back->port == bound.port);
  return 0;
}
