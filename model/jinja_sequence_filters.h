// The filters of jinja_filters.h that walk sequences: dictsort join map max min reject
// rejectattr select selectattr sort sum unique. Sorting and comparisons ignore case by default
// and accept dotted attribute paths ("user.name", "tags.0"), as in jinja2.
#ifndef SHARDSERVE_MODEL_JINJA_SEQUENCE_FILTERS_H_
#define SHARDSERVE_MODEL_JINJA_SEQUENCE_FILTERS_H_

#include <string>
#include <unordered_map>

#include "model/jinja_filters.h"

namespace shardserve {
namespace jinja {

// Registers the sequence filters by name.
void AddSequenceFilters(std::unordered_map<std::string, FilterFunction>* filters);

}  // namespace jinja
}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_JINJA_SEQUENCE_FILTERS_H_
