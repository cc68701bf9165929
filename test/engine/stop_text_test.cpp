#include "kuiper/engine/stop_text.h"

#include <gtest/gtest.h>

namespace kuiper::engine {
namespace {

std::string stream(StopText& st, std::initializer_list<std::string_view> pieces) {
  std::string out;
  for (auto p : pieces) out += st.push(p);
  return out;
}

TEST(StopText, PassesTextThroughWithoutStops) {
  StopText st({});
  EXPECT_EQ(stream(st, {"In the ", "beginning"}), "In the beginning");
  EXPECT_FALSE(st.stopped());
  EXPECT_EQ(st.flush(), "");
}

TEST(StopText, EndsBeforeAStopSplitAcrossPieces) {
  StopText st({"\n\n", "God"});
  EXPECT_EQ(st.push("In the beginning G"), "In the beginning ");  // "G" may start "God"
  EXPECT_EQ(st.push("o"), "");
  EXPECT_EQ(st.push("d created"), "");
  EXPECT_TRUE(st.stopped());
  EXPECT_EQ(st.push("more"), "");
  EXPECT_EQ(st.flush(), "");
}

TEST(StopText, ReleasesHeldTextThatTurnsOutNotToStop) {
  StopText st({"Amen."});
  EXPECT_EQ(st.push("so be it, Am"), "so be it, ");
  EXPECT_EQ(st.push("en"), "");
  EXPECT_EQ(st.push("!"), "Amen!");
  EXPECT_EQ(st.push(" Am"), " ");
  EXPECT_EQ(st.flush(), "Am");  // generation ended for another reason
}

TEST(StopText, TheEarliestStopWins) {
  StopText st({"beta", "alpha"});
  EXPECT_EQ(st.push("x alpha beta"), "x ");
  EXPECT_TRUE(st.stopped());
}

TEST(StopText, EmptyStopStringsAreIgnored) {
  StopText st({""});
  EXPECT_EQ(st.push("abc"), "abc");
  EXPECT_FALSE(st.stopped());
}

}  // namespace
}  // namespace kuiper::engine
