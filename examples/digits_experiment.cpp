// The strategy comparison of the article's section 4.1 on real data: handwritten digits.
//
// A 64-128-128-10 ReLU network is pretrained on the original 8 x 8 images of UCI optdigits
// (data/digits/, two thirds of the 1797 images), then adapted with LoRA on all three linear
// layers to a shifted domain (default: images rotated by 90 degrees) where it fails. Three
// studies run (studies.hpp): the comparison of the article's five strategies plus PiSSA, OLoRA,
// rsLoRA at rank 64 and full fine-tuning; the rsLoRA scaling study; PiSSA vs the default init.
//
//   build/bin/digits_experiment [--out experiments/digits] [--shift rotate90] [--seeds 5]
//                               [--steps 600] [--only comparison,rslora,pissa] [--quiet]
//
// Prints the reports on stdout; writes report.txt, report.json and PNG charts (gnuplot; CSV
// without it) to --out. docs/experiments.md shows a run with the default settings.
#include <cstdio>
#include <exception>
#include <numeric>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "experiments/command_line.hpp"
#include "experiments/digits.hpp"

int main(int argc, char** argv) {
  using namespace lora::experiments;
  CommandLine app{"LoRA strategy experiments on handwritten digits (UCI optdigits)"};
  std::string data = LORA_DIGITS_CSV, shiftName = "rotate90";
  CommonCommandLine cl;
  cl.seeds = 5;
  cl.pretrainSteps = 1500;
  cl.out = "experiments/digits";
  cl.adapt = {.steps = 600, .batch = 64, .evalEvery = 20, .quiet = false, .label = "digits"};
  cl.study.lr = 3e-3;
  cl.study.fullLr = 1e-3;
  app.option("--data", data, "the digits CSV (64 pixels and a label per line)");
  app.option("--shift", shiftName, "the adaptation domain: mirror, rotate90, rotate180");
  cl.addTo(app);
  if (const auto code = app.parse(argc, argv)) return *code;
  cl.finish();
  const int seeds = cl.seeds, pretrainSteps = cl.pretrainSteps;
  const AdaptOptions& adapt = cl.adapt;
  StudyOptions& study = cl.study;
  try {
    const DigitShift shift = parseDigitShift(shiftName);
    const DigitsSplit split = splitDigits(loadDigits(data), shift, 2024);
    const std::vector<Index> sizes{64, 128, 128, 10};
    const Network net =
        pretrain(sizes, split.train, {.steps = pretrainSteps, .quiet = adapt.quiet});
    const Metrics original = evaluate(net, split.val), shifted = evaluate(net, split.shiftedVal);
    study.task = fmt::format("digits, {} images", digitShiftName(shift));
    const std::string header = fmt::format(
        "Digits: {} training / {} held-out images; network 64-128-128-10 pretrained for {} steps "
        "on the original images.\nPretrained model, held-out accuracy: {:.3f} on original "
        "images, {:.3f} on {} images (loss {:.3f} / {:.3f}).\nAdaptation: {} steps of batch {}, "
        "evaluation every {} steps, seeds 1..{}.\n",
        split.train.size(), split.val.size(), pretrainSteps, original.accuracy, shifted.accuracy,
        digitShiftName(shift), original.loss, shifted.loss, adapt.steps, adapt.batch,
        adapt.evalEvery, seeds);
    AdaptationTask task(net, split.shiftedTrain, split.shiftedVal, adapt);
    const nlohmann::json j = {{"task", "digits"},
                              {"shift", digitShiftName(shift)},
                              {"pretrained",
                               {{"original_accuracy", original.accuracy},
                                {"shifted_accuracy", shifted.accuracy},
                                {"original_loss", original.loss},
                                {"shifted_loss", shifted.loss}}},
                              {"steps", adapt.steps},
                              {"batch", adapt.batch}};
    runStudies(task, study, j, header);
  } catch (const std::exception& e) {
    fmt::print(stderr, "digits_experiment: {}\n", e.what());
    return 1;
  }
  return 0;
}
