#include <sys/random.h>

#include <cerrno>

#include "sources/drivers.h"

namespace rngmux {
namespace {

// The kernel's CSPRNG. Not a hardware source: it is the honest fallback when
// nothing better exists, and it is what `auto` warns about.
class GetrandomSource final : public Source {
 public:
  GetrandomSource(std::string name, CommonSourceOptions options)
      : name_(std::move(name)), options_(options) {}

  const std::string& name() const override { return name_; }
  double claimed_entropy_bits_per_byte() const override { return options_.entropy_bits_per_byte; }
  std::size_t preferred_block_size() const override { return options_.block_size; }
  std::size_t reader_threads() const override { return options_.threads; }
  std::unique_ptr<Source> NewReader(std::size_t /*k*/) const override {
    return std::make_unique<GetrandomSource>(name_, options_);
  }

  Result<std::size_t> Read(std::span<std::uint8_t> out, const Interrupt& /*stop*/) override {
    // Flags 0: blocks only until the kernel's pool is first initialised (early boot),
    // never afterwards, so there is no need to watch `stop` here.
    for (;;) {
      const ssize_t n = getrandom(out.data(), out.size(), 0);
      if (n >= 0) return static_cast<std::size_t>(n);
      if (errno != EINTR) return Status::FromErrno("getrandom", errno);
    }
  }

 private:
  std::string name_;
  CommonSourceOptions options_;
};

}  // namespace

Result<std::unique_ptr<Source>> CreateGetrandomSource(const SourceSpec& spec,
                                                      const SourceFactoryContext& /*context*/) {
  Result<CommonSourceOptions> options =
      ParseCommonSourceOptions(spec, 8, kDefaultBlockBytes, {"threads"});
  if (!options.ok()) return options.status();
  return std::unique_ptr<Source>(std::make_unique<GetrandomSource>(spec.text, *options));
}

}  // namespace rngmux
