#include "common/option_list.h"

#include <gtest/gtest.h>

#include <string>

namespace rngmux {
namespace {

TEST(OptionListTest, SplitsKeysAndValues) {
  const auto items = ParseOptionList("a=1,b,c=,d=x=y");
  ASSERT_TRUE(items.has_value());
  ASSERT_EQ(items->size(), 4u);
  EXPECT_EQ((*items)[0].key, "a");
  EXPECT_EQ((*items)[0].value, "1");
  EXPECT_TRUE((*items)[0].has_value);
  EXPECT_EQ((*items)[1].key, "b");
  EXPECT_FALSE((*items)[1].has_value);
  EXPECT_EQ((*items)[2].key, "c");
  EXPECT_TRUE((*items)[2].has_value);
  EXPECT_EQ((*items)[2].value, "");
  EXPECT_EQ((*items)[3].key, "d");
  EXPECT_EQ((*items)[3].value, "x=y");
  EXPECT_EQ((*items)[3].text, "d=x=y");
  for (const OptionItem& item : *items) {
    EXPECT_FALSE(item.empty);
    EXPECT_FALSE(item.repeated);
  }
}

TEST(OptionListTest, MarksEmptyItemsAndRepeatedKeys) {
  const auto items = ParseOptionList("a,,a=2,");
  ASSERT_TRUE(items.has_value());
  ASSERT_EQ(items->size(), 4u);
  EXPECT_TRUE((*items)[1].empty);
  EXPECT_FALSE((*items)[1].repeated);
  EXPECT_TRUE((*items)[2].repeated);
  EXPECT_EQ((*items)[2].value, "2");
  EXPECT_TRUE((*items)[3].empty);
  EXPECT_TRUE((*items)[3].repeated);  // a second empty key

  const auto one = ParseOptionList("");
  ASSERT_TRUE(one.has_value());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_TRUE((*one)[0].empty);
}

TEST(OptionListTest, DoubleCommaEscapeIsOptIn) {
  const auto qemu = ParseOptionList("socket,path=/a,,b,,,id=c", {.double_comma_escape = true});
  ASSERT_TRUE(qemu.has_value());
  ASSERT_EQ(qemu->size(), 3u);
  EXPECT_EQ((*qemu)[0].text, "socket");
  EXPECT_EQ((*qemu)[1].value, "/a,b,");
  EXPECT_EQ((*qemu)[2].key, "id");

  const auto plain = ParseOptionList("path=/a,,b");
  ASSERT_TRUE(plain.has_value());
  ASSERT_EQ(plain->size(), 3u);
  EXPECT_TRUE((*plain)[1].empty);
  EXPECT_EQ((*plain)[2].key, "b");
}

TEST(OptionListTest, RefusesNulBytes) {
  EXPECT_FALSE(ParseOptionList(std::string("host=::1\0junk", 13)).has_value());
  EXPECT_FALSE(ParseOptionList(std::string("a,\0", 3), {.double_comma_escape = true}).has_value());
  EXPECT_TRUE(HasNulByte(std::string("\0", 1)));
  EXPECT_FALSE(HasNulByte("tcp:[::1]:4555"));
}

}  // namespace
}  // namespace rngmux
