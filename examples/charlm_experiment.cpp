// The strategy comparison of the article's section 4.1 on a character-level language model.
//
// A next-character MLP (the previous 6 characters one-hot -> 256 -> 256 -> next character) is
// pretrained on the English word list of Debian's wamerican package and adapted with LoRA on all
// three linear layers to French (wfrench). The score is held-out bits per character. The same
// three studies as digits_experiment run (studies.hpp).
//
//   build/bin/charlm_experiment [--out experiments/charlm] [--seeds 3] [--steps 800]
//                               [--only comparison,rslora,pissa] [--quiet]
//
// Needs /usr/share/dict/american-english and /usr/share/dict/french (apt-get install wamerican
// wfrench; scripts/deps.sh does). docs/experiments.md shows a run with the default settings.
#include <cmath>
#include <cstdio>
#include <exception>
#include <numeric>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "experiments/charlm.hpp"
#include "experiments/command_line.hpp"

int main(int argc, char** argv) {
  using namespace lora::experiments;
  CommandLine app{
      "LoRA strategy experiments on a character-level language model (English -> French)"};
  CharTaskOptions data;
  Index hidden = 256;
  CommonCommandLine cl;
  cl.seeds = 3;
  cl.pretrainSteps = 6000;
  cl.out = "experiments/charlm";
  cl.adapt = {.steps = 800, .batch = 128, .evalEvery = 40, .quiet = false, .label = "charlm"};
  cl.study.lr = 2e-3;
  cl.study.fullLr = 1e-3;
  app.option("--english", data.english, "English word list (wamerican)");
  app.option("--french", data.french, "French word list (wfrench)");
  app.option("--context", data.context, "characters of context", true);
  app.option("--pretrain-samples", data.pretrainSamples, "English samples for pretraining");
  app.option("--adapt-samples", data.adaptSamples, "French samples for adaptation");
  app.option("--hidden", hidden, "hidden units per layer", true);
  cl.addTo(app);
  if (const auto code = app.parse(argc, argv)) return *code;
  cl.finish();
  const int seeds = cl.seeds, pretrainSteps = cl.pretrainSteps;
  const AdaptOptions& adapt = cl.adapt;
  StudyOptions& study = cl.study;
  try {
    const CharTask t = makeCharTask(data);
    const Index V = t.vocab.size();
    const std::vector<Index> sizes{t.context * V, hidden, hidden, V};
    const Network net = pretrain(sizes, t.englishTrain,
                                 {.steps = pretrainSteps, .batch = 128, .quiet = adapt.quiet});
    const double bits = 1.0 / std::log(2.0);
    const Metrics en = evaluate(net, t.englishVal), fr = evaluate(net, t.frenchVal);
    study.task = "character LM, English -> French";
    study.report = {.lossName = "bits/char", .lossScale = bits};
    const std::string header = fmt::format(
        "Character LM: {} English and {} French words ({} symbols incl. boundary and other), "
        "context {}.\nSamples: {} English for pretraining, {} French for adaptation, {} held-out "
        "per language. Network {}-{}-{}-{} pretrained for {} steps.\nPretrained model, held-out: "
        "English {:.3f} bits/char (accuracy {:.3f}), French {:.3f} bits/char (accuracy {:.3f}).\n"
        "Adaptation: {} steps of batch {}, evaluation every {} steps, seeds 1..{}.\n",
        t.englishWords, t.frenchWords, V, t.context, t.englishTrain.size(), t.frenchTrain.size(),
        t.frenchVal.size(), sizes[0], hidden, hidden, V, pretrainSteps, en.loss * bits, en.accuracy,
        fr.loss * bits, fr.accuracy, adapt.steps, adapt.batch, adapt.evalEvery, seeds);
    AdaptationTask task(net, t.frenchTrain, t.frenchVal, adapt);
    const nlohmann::json j = {{"task", "charlm"},
                              {"vocabulary", V},
                              {"context", t.context},
                              {"pretrained",
                               {{"english_bits_per_char", en.loss * bits},
                                {"french_bits_per_char", fr.loss * bits},
                                {"english_accuracy", en.accuracy},
                                {"french_accuracy", fr.accuracy}}},
                              {"steps", adapt.steps},
                              {"batch", adapt.batch}};
    runStudies(task, study, j, header);
  } catch (const std::exception& e) {
    fmt::print(stderr, "charlm_experiment: {}\n", e.what());
    return 1;
  }
  return 0;
}
