#include <cstdint>
#include <string>

#include <boost/test/unit_test.hpp>

#include "schemas/numbers.hpp"

using tollgate::schemas::parse_number;

BOOST_AUTO_TEST_SUITE(numbers)

BOOST_AUTO_TEST_CASE(only_a_whole_text_is_a_number) {
  BOOST_TEST(*parse_number<int64_t>("42") == 42);
  BOOST_TEST(*parse_number<int64_t>("-7") == -7);
  BOOST_TEST(*parse_number<int64_t>("9223372036854775807") == INT64_MAX);
  BOOST_TEST(*parse_number<double>("0.25") == 0.25);
  for (std::string bad : {"", " 1", "1 ", "+1", "1x", "0x10", "-", "9223372036854775808"})
    BOOST_TEST(!parse_number<int64_t>(bad), "'" << bad << "' is not an int64");
  BOOST_TEST(!parse_number<unsigned>("-1"));
  BOOST_TEST(!parse_number<uint16_t>("65536"));
}

BOOST_AUTO_TEST_SUITE_END()
