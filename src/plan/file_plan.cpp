#include "plan/file_plan.hpp"

#include "format/zip_layout.hpp"

namespace ckptw::detail {

void FilePlan::add_owned_record(std::string name, std::string bytes) {
  owned_payloads.push_back(std::move(bytes));
  const std::string& stored = owned_payloads.back();
  PlannedRecord record;
  record.name = std::move(name);
  record.data = reinterpret_cast<const unsigned char*>(stored.data());
  record.size = stored.size();
  records.push_back(std::move(record));
}

int FilePlan::first_device() const {
  for (const PlannedRecord& r : records) {
    if (r.device >= 0 && r.size > 0) return r.device;
  }
  return -1;
}

void lay_out(FilePlan& plan) {
  std::uint64_t offset = 0;
  std::vector<ZipEntry> entries;
  entries.reserve(plan.records.size());
  for (auto& record : plan.records) {
    std::string full_name = plan.folder + "/" + record.name;
    record.header_offset = offset;
    record.payload_offset = payload_offset(offset, full_name.size(), record.size, plan.alignment);
    offset = record.payload_offset + record.size + data_descriptor_size(record.size, record.header_offset);
    entries.push_back(ZipEntry{std::move(full_name), record.size, record.header_offset, 0});
  }
  plan.central_directory_offset = offset;
  plan.file_size = offset + central_directory_and_end_size(entries);
}

std::string archive_folder_for(const std::string& file_path) {
  std::size_t start = file_path.find_last_of('/');
  start = (start == std::string::npos) ? 0 : start + 1;
  std::string base = file_path.substr(start);
  if (auto dot = base.find_last_of('.'); dot != std::string::npos) base.resize(dot);
  bool ascii = true;
  for (unsigned char c : base) ascii = ascii && c < 0x80;
  return (base.empty() || !ascii) ? "archive" : base;
}

}  // namespace ckptw::detail
