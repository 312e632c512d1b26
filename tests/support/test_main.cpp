#define BOOST_TEST_MODULE tollgate
#include <boost/test/unit_test.hpp>
