#include "writer/image_streamer.hpp"

#include <stdexcept>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "checksum/crc32.hpp"
#include "ckptw/error.hpp"
#include "ckptw/payload_source.hpp"
#include "format/serialization_id.hpp"
#include "format/zip_layout.hpp"
#include "util/stopwatch.hpp"

namespace ckptw::detail {
namespace {

// The record's CRC-32 when it was computed where its bytes live (on the
// GPU), waiting for it if it is still being computed.
bool device_crc32(const PlannedRecord& record, const StagedRecord& staged, CopyEngine* engine, std::uint32_t* crc) {
  if (record.crc32_known) {
    *crc = record.crc32;
    return true;
  }
  if (staged.crc32_ticket == 0) return false;
  if (engine == nullptr) throw std::logic_error("ckptw: record " + record.name + " has a device CRC without an engine");
  *crc = engine->device_crc32_result(staged.crc32_ticket);
  return true;
}

}  // namespace

void ImageStreamer::check_queue() {
  if (int rc = queue_->error(); rc < 0) {
    while (queue_->in_flight() > 0) note_done(queue_->wait_any());
    throw IoError("write failed", *path_, "", -rc);
  }
}

void ImageStreamer::note_done(std::size_t buffer) {
  if (buffer == WriteQueue::kExternal) {
    --externals_in_flight_;
  } else {
    free_.push_back(buffer);
  }
}

void ImageStreamer::take_completion() {
  note_done(queue_->wait_any());
  check_queue();
}

void ImageStreamer::acquire() {
  while (free_.empty()) take_completion();
  current_ = free_.back();
  free_.pop_back();
  buffered_ = 0;
}

void ImageStreamer::submit_current(std::size_t size) {
  queue_->submit(current_, size, buffer_offset_);
  buffer_offset_ += buffered_;
  buffered_ = 0;
}

void ImageStreamer::append(const void* data, std::size_t size, std::uint32_t* crc) {
  const auto* src = static_cast<const unsigned char*>(data);
  const std::size_t capacity = ring_.buffer_bytes();
  while (size > 0) {
    std::size_t n = std::min(size, capacity - buffered_);
    unsigned char* dst = ring_.data(current_) + buffered_;
    if (crc) {
      const Stopwatch copying;  // payloads only: headers and descriptors are a few dozen bytes each
      *crc = crc32_copy(dst, src, n, *crc);
      copy_crc_secs_ += copying.elapsed();
    } else {
      std::memcpy(dst, src, n);
    }
    buffered_ += n;
    src += n;
    size -= n;
    if (buffered_ == capacity) {
      submit_current(capacity);
      acquire();
    }
  }
}

void ImageStreamer::write_in_place(const unsigned char* data, std::size_t size, std::uint32_t* crc) {
  if (buffered_ > 0) {
    submit_current(buffered_);
    acquire();
  }
  // Chunks of one ring buffer each, so that several are written at once and
  // the CRC of one runs while the kernel copies the others.
  const std::size_t chunk = ring_.buffer_bytes();
  for (std::size_t done = 0; done < size; done += chunk) {
    const std::size_t n = std::min(chunk, size - done);
    while (externals_in_flight_ >= ring_.count()) take_completion();
    queue_->submit_external(data + done, n, buffer_offset_ + done);
    ++externals_in_flight_;
    const Stopwatch checksumming;
    if (crc) *crc = crc32_update(*crc, data + done, n);
    copy_crc_secs_ += checksumming.elapsed();
  }
  buffer_offset_ += size;
}

// Hands the queue every whole piece of [image_submitted_, ready); with a
// non-zero `padded_end` (the end of the file, rounded up as the file needs),
// everything up to it.
void ImageStreamer::submit_image_through(std::uint64_t ready, std::uint64_t padded_end) {
  const std::size_t piece = ring_.buffer_bytes();
  const std::uint64_t end = padded_end != 0 ? padded_end : ready;
  while (end > image_submitted_ && (padded_end != 0 || end - image_submitted_ >= piece)) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(piece, end - image_submitted_));
    while (externals_in_flight_ >= ring_.count()) take_completion();
    queue_->submit_external(image_ + image_submitted_, n, image_submitted_);
    ++externals_in_flight_;
    image_submitted_ += n;
  }
}

// File bytes that are not payloads (headers, descriptors, the serialization
// id, the central directory): into the image at the current position, or
// into the ring.
void ImageStreamer::put(const void* data, std::size_t size, std::uint32_t* crc) {
  if (image_ == nullptr) {
    append(data, size, crc);
    return;
  }
  std::memcpy(image_ + image_end_, data, size);
  if (crc) *crc = crc32_update(*crc, image_ + image_end_, size);
  image_end_ += size;
}

// A payload: already in the image (checksummed and handed to the queue piece
// by piece, so that the CRC of one runs while the kernel writes the ones
// before it), or from its own memory (in place or through the ring).
void ImageStreamer::put_payload(const PlannedRecord& record, bool in_place, std::uint32_t* crc) {
  if (record.source != nullptr) {
    put_from_source(record, crc);
    return;
  }
  if (image_ == nullptr) {
    if (in_place && record.size >= kInPlaceMinBytes) {
      write_in_place(record.data, record.size, crc);
    } else {
      append(record.data, record.size, crc);
    }
    return;
  }
  if (record.data != image_ + image_end_) {
    throw std::logic_error("ckptw: record " + record.name + " is not at its offset in the image");
  }
  const std::size_t piece = ring_.buffer_bytes();
  const std::uint64_t end = image_end_ + record.size;
  while (image_end_ < end) {
    const std::uint64_t next = std::min(end, (image_end_ / piece + 1) * piece);
    const Stopwatch checksumming;
    if (crc) *crc = crc32_update(*crc, image_ + image_end_, static_cast<std::size_t>(next - image_end_));
    copy_crc_secs_ += checksumming.elapsed();
    image_end_ = next;
    submit_image_through(image_end_, 0);
  }
}

// A streamed payload: its source writes straight into the ring's buffers,
// where it is checksummed; the first bytes are kept for the serialization id.
void ImageStreamer::put_from_source(const PlannedRecord& record, std::uint32_t* crc) {
  if (image_ != nullptr) throw std::logic_error("ckptw: streamed record " + record.name + " in a staged image");
  const std::size_t capacity = ring_.buffer_bytes();
  source_head_.clear();
  for (std::uint64_t done = 0; done < record.size;) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(record.size - done, capacity - buffered_));
    unsigned char* dst = ring_.data(current_) + buffered_;
    try {
      record.source->read(done, dst, n);
    } catch (...) {
      // The writes in flight read other ring buffers: they end before the
      // caller may free the ring or close the file.
      while (queue_->in_flight() > 0) note_done(queue_->wait_any());
      throw;
    }
    if (source_head_.size() < kSourceHeadBytes) {
      source_head_.append(reinterpret_cast<const char*>(dst), std::min(n, kSourceHeadBytes - source_head_.size()));
    }
    const Stopwatch checksumming;
    if (crc) *crc = crc32_update(*crc, dst, n);
    copy_crc_secs_ += checksumming.elapsed();
    buffered_ += n;
    done += n;
    if (buffered_ == capacity) {
      submit_current(capacity);
      acquire();
    }
  }
}

void ImageStreamer::start(WriteQueue& queue, const std::string& path, unsigned char* image) {
  queue_ = &queue;
  path_ = &path;
  externals_in_flight_ = 0;
  image_ = image;
  image_end_ = 0;
  image_submitted_ = 0;
  copy_crc_secs_ = 0;
  free_.clear();
  buffer_offset_ = 0;
  if (image_ == nullptr) {
    for (std::size_t i = ring_.count(); i-- > 0;) free_.push_back(i);
    acquire();
  }
}

std::uint64_t ImageStreamer::offset() const { return image_ != nullptr ? image_end_ : buffer_offset_ + buffered_; }

ImageStreamer::ArchiveCrcs ImageStreamer::stream_archive(const FilePlan& plan, bool in_place, const Staging& staging,
                                                         CopyEngine* engine, bool whole_crc) {
  ArchiveCrcs crcs;
  // The CRC-32 of every byte of the archive, when asked: the framing's own,
  // combined with the payloads' (computed anyway for the zip directory).
  const auto add_bytes = [&](const std::string& bytes) {
    if (whole_crc) crcs.whole = crc32_update(crcs.whole, bytes.data(), bytes.size());
  };
  const auto add_crc = [&](std::uint32_t crc, std::uint64_t size) {
    if (whole_crc && size > 0) crcs.whole = crc32_combine(crcs.whole, crc, size);
  };
  std::vector<ZipEntry> entries;
  SerializationId serialization_id;
  entries.reserve(plan.records.size());
  // One buffer for every record's header and descriptor: a file of 100,000
  // small tensors would otherwise allocate and free two strings per record.
  std::string framing;
  for (std::size_t i = 0; i < plan.records.size(); ++i) {
    const PlannedRecord& record = plan.records[i];
    const StagedRecord& staged = staging.record(i);
    if (image_ != nullptr && record.header_offset != image_end_) {
      throw std::logic_error("ckptw: records of the image are not back to back");
    }
    if (record.device >= 0 || (staged.copy_ticket != 0 && engine == nullptr)) {
      throw std::logic_error("ckptw: record " + record.name + " is not staged");
    }
    // Before the header: in the image, a packed device copy lands the gaps
    // between its payloads too (with scratch bytes), so the header before
    // this payload is written only after the copy landed. The descriptor
    // after it then lies in landed memory as well (a later copy starts at
    // its own payload).
    if (staged.copy_ticket != 0) engine->wait(staged.copy_ticket);
    std::string name = plan.folder + "/" + record.name;
    framing.clear();
    append_local_file_header(framing, name, record.size, record.header_offset, plan.alignment);
    put(framing.data(), framing.size(), nullptr);
    add_bytes(framing);

    std::uint32_t crc = 0;
    if (record.is_serialization_id) {
      const std::string id = serialization_id.value();
      put(id.data(), id.size(), &crc);
    } else if (record.size > 0) {
      std::uint32_t computed_on_device = 0;
      const bool known = device_crc32(record, staged, engine, &computed_on_device);
      put_payload(record, in_place, known ? nullptr : &crc);
      if (known) crc = computed_on_device;
    }
    add_crc(crc, record.size);
    framing.clear();
    append_data_descriptor(framing, crc, record.size, record.header_offset);
    put(framing.data(), framing.size(), nullptr);
    add_bytes(framing);
    if (image_ != nullptr) submit_image_through(image_end_, 0);
    if (!record.is_serialization_id) {
      const auto* payload = record.source != nullptr ? reinterpret_cast<const unsigned char*>(source_head_.data())
                                                     : record.data;
      serialization_id.add(record.name, payload, record.size, crc);
    }
    entries.push_back(ZipEntry{std::move(name), record.size, record.header_offset, crc});
  }
  const std::string tail = central_directory_and_end(entries, plan.central_directory_offset);
  put(tail.data(), tail.size(), &crcs.directory);
  add_crc(crcs.directory, tail.size());
  return crcs;
}

std::uint64_t ImageStreamer::finish(bool pad_last_write) {
  // The last write, padded to a block when asked.
  const std::uint64_t written = offset();
  const std::uint64_t block = BufferRing::kAlignment;
  if (image_ != nullptr) {
    const std::uint64_t padded_end = pad_last_write ? (written + block - 1) / block * block : written;
    std::memset(image_ + written, 0, static_cast<std::size_t>(padded_end - written));
    submit_image_through(written, padded_end);
  } else if (buffered_ > 0) {
    const std::size_t size = pad_last_write ? (buffered_ + block - 1) / block * block : buffered_;
    std::memset(ring_.data(current_) + buffered_, 0, size - buffered_);
    submit_current(size);
  } else {
    free_.push_back(current_);
  }
  while (queue_->in_flight() > 0) note_done(queue_->wait_any());
  check_queue();
  return written;
}

ImageStreamer::Result ImageStreamer::stream(const FilePlan& plan, WriteQueue& queue, const std::string& path,
                                            bool pad_last_write, const Staging* staging, CopyEngine* engine) {
  start(queue, path, staging != nullptr ? staging->image : nullptr);
  const Staging no_staging;  // nothing in flight: every record landed
  // Into a buffered file, large payloads go from their own memory: the kernel
  // copies them into the page cache anyway, so a copy into the ring would be
  // a second one. O_DIRECT needs the ring's aligned buffers.
  const ArchiveCrcs crcs =
      stream_archive(plan, !pad_last_write, staging != nullptr ? *staging : no_staging, engine, false);
  const std::uint64_t written = finish(pad_last_write);
  if (written != plan.file_size) {
    throw Error("internal: streamed " + std::to_string(written) + " bytes, planned " + std::to_string(plan.file_size),
                path);
  }
  return Result{written, crcs.directory, copy_crc_secs_};
}

std::vector<ImageStreamer::SegmentResult> ImageStreamer::stream_segments(const std::vector<Segment>& segments,
                                                                         WriteQueue& queue, const std::string& path,
                                                                         bool pad_last_write, double* copy_crc_secs) {
  start(queue, path, nullptr);
  const Staging no_staging;
  std::vector<SegmentResult> results;
  results.reserve(segments.size());
  for (const Segment& segment : segments) {
    SegmentResult result;
    result.offset = offset();
    if (segment.archive != nullptr) {
      result.crc32 = stream_archive(*segment.archive, !pad_last_write, no_staging, nullptr, true).whole;
    } else if (segment.size > 0) {
      append(segment.bytes, segment.size, &result.crc32);
    }
    result.length = offset() - result.offset;
    const std::uint64_t planned = segment.archive != nullptr ? segment.archive->file_size : segment.size;
    if (result.length != planned) {
      throw Error("internal: streamed " + std::to_string(result.length) + " bytes of a segment, planned " +
                      std::to_string(planned),
                  path);
    }
    results.push_back(result);
  }
  finish(pad_last_write);
  if (copy_crc_secs != nullptr) *copy_crc_secs = copy_crc_secs_;
  return results;
}

}  // namespace ckptw::detail
