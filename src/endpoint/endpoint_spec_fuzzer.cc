// libFuzzer target for ParseEndpointSpec (--listen / --connect values). The first
// byte picks the role, the rest is the text. Traps unless an accepted spec
// describes itself as text that parses back to the same spec, and unless a
// rejected one says why.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "endpoint/endpoint_spec.h"

namespace {

void Check(bool condition) {
  if (!condition) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace rngmux;
  if (size == 0) return 0;
  // NUL bytes included: the parser must refuse them ("::1\0junk" is not "::1").
  const bool has_nul = std::memchr(data + 1, 0, size - 1) != nullptr;
  const EndpointRole role = (data[0] & 1) != 0 ? EndpointRole::kConnect : EndpointRole::kListen;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  const Result<EndpointSpec> spec = ParseEndpointSpec(role, text);
  if (!spec.ok()) {
    Check(!spec.status().message().empty());
    return 0;
  }
  Check(!has_nul);
  Check(spec->role == role);
  Check(spec->text == text);
  Check(spec->port != 0 || role == EndpointRole::kListen || IsUnixSocketEndpoint(spec.value()));
  const std::string described = spec->Describe();
  const Result<EndpointSpec> again = ParseEndpointSpec(role, described);
  Check(again.ok());
  Check(again->Describe() == described);
  Check(again->Address() == spec->Address());
  Check(again->transport == spec->transport && again->host == spec->host &&
        again->port == spec->port && again->path == spec->path &&
        again->unix_mode == spec->unix_mode && again->session.raw == spec->session.raw &&
        again->session.lead_bytes == spec->session.lead_bytes);
  (void)IsLoopbackEndpoint(spec.value());
  return 0;
}
