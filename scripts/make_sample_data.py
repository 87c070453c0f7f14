#!/usr/bin/env python3
"""Generate tiller's bundled sample preference dataset (HelpSteer3 ``preference`` schema).

Writes ``src/tiller/data/sample/helpsteer3/train.jsonl`` and ``validation.jsonl``: one JSON
object per line with the fields of the HelpSteer3 ``preference`` config:

    domain, language, context, response1, response2, overall_preference, individual_preference

Sign convention (as in HelpSteer3): ``overall_preference`` is an int in -3..3; negative means
response1 is better, positive means response2 is better, 0 means about the same.

Every row is synthetic. It is assembled from the hand-written topic entries below (a question,
the points of a correct answer, and for many topics a confidently wrong version of one or more
points) and from hand-written templates for the ways a worse answer fails: a wrong fact,
off-topic, rude, an unneeded refusal, truncated, vague filler, repetition, or an ignored
instruction. STEM arithmetic questions come from small seeded generators. Code and multilingual
rows are hand-written pairs. Nothing is downloaded and no row is copied from HelpSteer3 or any
other dataset. The output depends only on the seed: the same seed gives byte-identical files.

Usage:
    python scripts/make_sample_data.py            # writes the files and prints their statistics
    python scripts/make_sample_data.py --seed 7 --out /tmp/sample
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path

SEED = 20250517
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "tiller" / "data" / "sample" / "helpsteer3"

# Rows per split and domain. English = general + stem (the rows the English filter keeps).
SIZES = {
    "train": {"general": 360, "stem": 120, "code": 40, "multilingual": 40},
    "validation": {"general": 90, "stem": 30, "code": 10, "multilingual": 10},
}
TIE_RATE = 0.08  # share of English rows with overall_preference == 0
MULTI_TURN_RATE = 0.15  # share of English rows with a user/assistant/user context
VAL_TOPIC_FRACTION = 0.2  # hand-written topics held out for validation (never seen in train)
MAX_RESPONSE_WORDS = 120
MAX_USER_TURN_WORDS = 60
MAX_ROW_WORDS = 185  # whole context + the longer response, to fit 256 Llama tokens

# --------------------------------------------------------------------------------------------
# Topic entries. Format, one blank line between entries:
#   Q: the user's question            S: a short noun phrase for the subject (used in templates)
#   K: info (default) | howto | prose | poem
#   A: one point of the correct answer (the first point answers the question on its own for
#      K: info, so a one-sentence answer can use it)
#   W: <point number> | a confidently wrong replacement for that point (all W lines together
#      make the factually wrong answer)
#   V: for writing tasks whose prompt carries a constraint, a version that ignores it
# --------------------------------------------------------------------------------------------

GENERAL_TOPICS = r"""
Q: How do I remove a coffee stain from a cotton shirt?
S: removing coffee stains
K: howto
A: Blot the stain right away with a paper towel instead of rubbing it.
A: Rinse it from the back of the fabric with cold water.
A: Work in a drop of liquid laundry detergent and let it sit for five minutes.
A: Wash as usual and air-dry, since dryer heat can set any stain that remains.
W: 2 | Rinse it from the front with boiling water, which lifts coffee out instantly.

Q: How long should I boil an egg to get a firm yolk?
S: boiling eggs
A: For a fully firm yolk, simmer a large egg for about 10 to 12 minutes after the water returns to a boil.
A: Then move it straight into cold or iced water for a few minutes.
A: The cold bath stops the cooking and makes the shell easier to peel.
W: 1 | For a fully firm yolk, boil a large egg for about 3 minutes after the water returns to a boil.

Q: What's the best way to store fresh herbs like parsley and cilantro?
S: storing fresh herbs
A: Trim the stems and stand the herbs in a jar with an inch of water, like a bouquet.
A: Cover the leaves loosely with a plastic bag and keep the jar in the fridge.
A: Change the water every couple of days; they should stay fresh for about a week.
A: Basil is the exception: keep it at room temperature, because cold turns its leaves black.
W: 4 | Basil stores best the same way, in the coldest part of the fridge, where it stays green for weeks.

Q: How do I unclog a slow bathroom sink drain without harsh chemicals?
S: unclogging a sink drain
K: howto
A: Remove the stopper and pull out any hair with a drain snake or a bent wire hanger.
A: Pour half a cup of baking soda into the drain, followed by a cup of white vinegar.
A: Let it fizz for 15 minutes, then flush it with a kettle of hot water.
A: If it's still slow, clean the P-trap under the sink with a bucket underneath to catch the water.
W: 2 | Pour in a cup of bleach along with a cup of vinegar; the mix is stronger than either one alone.

Q: How can I keep my cut avocado from turning brown?
S: keeping avocado from browning
A: Leave the pit in the unused half and brush the exposed flesh with lemon or lime juice.
A: Wrap it tightly in plastic wrap so as little air as possible touches the surface.
A: Store it in the fridge and use it within a day or two.
W: 2 | Leave it uncovered so the air can circulate, which is what keeps the flesh green.

Q: What temperature should chicken be cooked to so it's safe to eat?
S: cooking chicken safely
A: Chicken is safe when the thickest part reaches 165°F (74°C) on a food thermometer.
A: Check the thickest part without touching the bone, which heats faster than the meat.
A: Let it rest for a few minutes afterward so the juices settle.
W: 1 | Chicken is safe once the thickest part reaches 135°F (57°C) on a food thermometer.

Q: How do I make rice that isn't sticky?
S: cooking fluffy rice
K: howto
A: Rinse the rice in a sieve until the water runs mostly clear, which removes surface starch.
A: For long-grain white rice, use about 1.5 cups of water per cup of rice.
A: Bring it to a boil, cover, and simmer on low for 15 to 18 minutes without lifting the lid.
A: Take it off the heat, let it steam for 5 minutes, then fluff it with a fork.
W: 2 | For long-grain white rice, use about 4 cups of water per cup of rice.

Q: Why does my homemade bread come out dense and heavy?
S: dense homemade bread
A: The most common cause is under-proofing: the dough didn't rise long enough before baking.
A: Old yeast, or water hot enough to kill the yeast, has the same effect.
A: Too much flour also makes a stiff, heavy loaf, so weigh it instead of scooping.
A: Let the dough roughly double in size in a warm spot before shaping.
W: 2 | Water that is too cold is the usual cause, since yeast only wakes up in water at a full boil.

Q: How often should I water a snake plant?
S: caring for a snake plant
A: Water a snake plant only when the soil has dried out completely, usually every 2 to 3 weeks.
A: In winter, once a month is often enough.
A: Overwatering is the main way these plants die, because their roots rot in wet soil.
W: 1 | Water a snake plant every day and keep the soil constantly moist, like a fern.

Q: What's the easiest way to clean a microwave?
S: cleaning a microwave
K: howto
A: Fill a microwave-safe bowl with water and a few slices of lemon or a splash of vinegar.
A: Heat it for about 3 minutes, then leave the door shut for a few more minutes so the steam can work.
A: Carefully remove the bowl and wipe the loosened grime away with a sponge.
W: 1 | Put an empty metal bowl in the microwave and run it for 5 minutes to burn off the grime.

Q: How do I get rid of fruit flies in my kitchen?
S: fruit flies
K: howto
A: Throw out overripe fruit and empty the trash and compost, since that's where they breed.
A: Set a trap: a small bowl of apple cider vinegar with a drop of dish soap.
A: The soap breaks the surface tension, so flies that land in it sink.
A: Rinse drains and recycling so there is nothing left for them to feed on.

Q: Can I freeze milk?
S: freezing milk
A: Yes, milk can be frozen for about three months.
A: Leave some space in the container, because it expands as it freezes.
A: Thaw it in the fridge and shake it well, since the fat can separate.
A: Thawed milk is best used in cooking, baking, or smoothies.
W: 1 | No, milk cannot be frozen safely; freezing makes it toxic.

Q: How do I sharpen a kitchen knife with a whetstone?
S: sharpening a knife
K: howto
A: Soak the whetstone in water for 10 to 15 minutes if it is a water stone.
A: Hold the blade at about a 15 to 20 degree angle against the coarse side.
A: Draw it across the stone from heel to tip, about ten strokes per side.
A: Repeat on the fine side, then rinse and dry the knife.
W: 2 | Hold the blade at about a 60 degree angle, nearly upright, against the coarse side.

Q: What is the difference between baking soda and baking powder?
S: baking soda and baking powder
A: Baking soda is pure sodium bicarbonate, so it needs an acid in the recipe, like buttermilk or lemon, to make it rise.
A: Baking powder is baking soda already mixed with a dry acid, so it only needs moisture and heat.
A: Baking soda is about three times stronger, so you can't swap them one-for-one.
W: 1 | Baking soda is pure citric acid, so it needs a base in the recipe to make it rise.

Q: How do I hang a heavy picture frame on drywall?
S: hanging heavy pictures
K: howto
A: Use a stud finder and screw directly into a wooden stud if one is in the right place.
A: If not, use drywall anchors rated for more than the frame's weight, such as toggle bolts.
A: Mark the spot with a pencil and check it with a level before drilling.
A: For wide frames, use two hooks so the picture stays straight.
W: 2 | If not, a single small finishing nail in the drywall will safely hold up to 50 kg.

Q: What's a good way to fall asleep faster?
S: falling asleep
A: Keep a consistent sleep and wake time, even on weekends.
A: Put screens away about an hour before bed and keep the bedroom cool and dark.
A: Avoid caffeine after early afternoon, since it can stay in your system for hours.
A: If you can't sleep after 20 minutes, get up and do something calm until you feel drowsy.
W: 3 | Have a strong coffee right before bed; caffeine has no effect once you are lying down.

Q: How do I get a red wine stain out of a carpet?
S: red wine stains
K: howto
A: Blot up as much wine as possible with a clean cloth, working from the outside in.
A: Pour a little cold water on the spot and blot again.
A: Apply a mix of one tablespoon dish soap, one tablespoon white vinegar, and two cups of warm water.
A: Blot until the stain lifts, rinse with cold water, and let it dry.
W: 1 | Scrub the wine hard with a stiff brush in circles so it spreads out and fades.

Q: How do I open a jar lid that's stuck?
S: opening stuck jars
K: howto
A: Run the lid under hot water for 30 seconds; the metal expands and loosens.
A: Wear a rubber glove or put a rubber band around the lid for a better grip.
A: You can also tap the edge of the lid on the counter to break the seal.

Q: How long can cooked leftovers stay in the fridge?
S: storing leftovers
A: Most cooked leftovers are safe in the fridge for three to four days.
A: Refrigerate them within two hours of cooking, in shallow airtight containers.
A: If you won't eat them in time, freeze them instead.
W: 1 | Most cooked leftovers are safe in the fridge for about three weeks.

Q: How do I descale a kettle?
S: descaling a kettle
K: howto
A: Fill the kettle halfway with equal parts water and white vinegar.
A: Bring it to a boil, then let it sit for about an hour.
A: Pour it out, rinse well, and boil plain water once or twice to remove the vinegar taste.

Q: How do I start composting at home?
S: home composting
K: howto
A: Choose a bin or a corner of the yard and add a mix of "greens" and "browns".
A: Greens are kitchen scraps and grass clippings; browns are dry leaves, cardboard, and paper.
A: Aim for roughly two to three parts browns to one part greens, and keep it as damp as a wrung-out sponge.
A: Turn it every week or two; it should become usable compost in a few months.
W: 2 | Greens include meat, bones, and dairy, which break down fastest and keep pests away.

Q: Why do onions make you cry, and how can I stop it?
S: cutting onions
A: Cutting an onion releases a gas called syn-propanethial-S-oxide, which irritates your eyes.
A: Chill the onion for 30 minutes first, which slows the reaction.
A: Use a very sharp knife so you crush fewer cells, and cut near a running fan.
W: 1 | Cutting an onion releases chlorine gas, which is why your eyes sting.

Q: How can I keep my houseplants from getting root rot?
S: preventing root rot
A: Use pots with drainage holes so extra water can escape.
A: Water only when the top inch or two of soil is dry.
A: Use a well-draining potting mix, and empty saucers after watering.
W: 2 | Water every day whether or not the soil is dry, since constant moisture prevents rot.

Q: How do I iron a dress shirt?
S: ironing a shirt
K: howto
A: Start with a slightly damp shirt and set the iron to the fabric's temperature, usually cotton.
A: Iron the collar first, then the cuffs and sleeves.
A: Finish with the back and the two front panels, working around the buttons.
A: Hang it up right away so it doesn't wrinkle again.

Q: Is it safe to put a cast iron pan in the dishwasher?
S: caring for cast iron
A: No, it isn't a good idea: the dishwasher strips the seasoning and can make the pan rust.
A: Wash it by hand with hot water and a brush; a little soap is fine.
A: Dry it right away, then rub a thin layer of oil on the surface.
W: 1 | Yes, it's completely fine: the dishwasher actually strengthens the seasoning.

Q: How do I make a basic vinaigrette?
S: making vinaigrette
A: Use about three parts oil to one part vinegar, for example 3 tablespoons of olive oil and 1 of vinegar.
A: Add a pinch of salt, some pepper, and half a teaspoon of mustard to help it emulsify.
A: Whisk it, or shake it in a jar, until it thickens, then taste and adjust.
W: 1 | Use about one part oil to five parts vinegar, for example 1 tablespoon of oil and 5 of vinegar.

Q: What should I do if my phone gets wet?
S: a wet phone
K: howto
A: Turn it off immediately and don't try to charge it.
A: Remove the case and SIM tray, then dry the outside with a soft cloth.
A: Let it air-dry for at least 24 hours in a dry place, ideally with a fan blowing over it.
A: Skip the bag of rice; it doesn't work better than air and can leave dust in the ports.
W: 1 | Plug it in to charge right away, since the current helps drive out the water.

Q: How do I stop my glasses from fogging up when I wear a mask?
S: foggy glasses
A: Make sure the mask fits snugly over your nose, ideally one with a bendable nose wire.
A: Push your glasses down so they rest on top of the mask's upper edge.
A: Wash the lenses with soapy water and let them air-dry; the thin film reduces fog.

Q: How can I make my laundry smell fresher?
S: fresh-smelling laundry
A: Don't overload the machine, so water and detergent can circulate.
A: Move clothes to the dryer or line right after the cycle ends; damp clothes left sitting get musty.
A: Clean the washer monthly by running a hot cycle with a cup of white vinegar.
A: Leave the door open between washes so the drum can dry out.

Q: What's the right way to thaw frozen meat?
S: thawing meat
A: The safest way is in the fridge, which takes about a day for every 2 kg of meat.
A: For faster thawing, seal it in a bag and submerge it in cold water, changing the water every 30 minutes.
A: Never thaw meat on the counter at room temperature, because bacteria grow quickly on the surface.
W: 3 | The best way is to leave it on the counter overnight, since room temperature keeps bacteria dormant.

Q: How much water should an adult drink per day?
S: daily water intake
A: A common guideline is about 2.7 liters of total fluids a day for women and 3.7 liters for men, including water from food.
A: In practice that's roughly 6 to 8 glasses of drinks for most people.
A: You need more in hot weather or when you exercise; pale yellow urine is a good sign you're hydrated.
W: 1 | A common guideline is about 12 liters of plain water a day for every adult, regardless of size.

Q: What are some tips for creating a monthly budget?
S: budgeting
A: Start by listing your take-home income and all your fixed expenses, like rent and bills.
A: Track your spending for a month to see where the rest actually goes.
A: Try a simple rule such as 50/30/20: half for needs, 30% for wants, and 20% for savings and debt.
A: Review it each month and adjust categories that don't match reality.
W: 3 | Try a simple rule such as 50/30/20: half for wants, 30% for savings, and only 20% for needs like rent and food.

Q: What is an emergency fund and how big should it be?
S: emergency funds
A: An emergency fund is money set aside for unexpected costs like job loss, car repairs, or medical bills.
A: A common target is three to six months of essential living expenses.
A: Keep it in a separate savings account that's easy to access but not tied to your daily spending.
W: 2 | A common target is about one week of expenses; anything more is wasted money.

Q: How do I prepare for a job interview?
S: job interviews
A: Research the company: what it does, its recent news, and the role's responsibilities.
A: Prepare short stories from your experience that show your skills, using a situation-action-result format.
A: Practice answers to common questions out loud, and prepare two or three questions to ask them.
A: Plan your route or test your video setup, and arrive a few minutes early.

Q: How should I ask my manager for a raise?
S: asking for a raise
A: Pick a good moment, such as a performance review or right after a successful project.
A: Research typical salaries for your role and location so your number is realistic.
A: List specific results you've delivered, ideally with numbers.
A: Ask clearly for a specific amount, then listen and be open to a follow-up plan.

Q: What is compound interest?
S: compound interest
A: Compound interest is interest calculated on both the original amount and the interest already earned.
A: For example, $1,000 at 5% a year becomes $1,050 after one year and $1,102.50 after two.
A: Over long periods this snowball effect makes savings grow much faster than simple interest.
W: 2 | For example, $1,000 at 5% a year becomes $1,050 after one year and $1,200 after two.

Q: How can I improve my credit score?
S: credit scores
A: Pay every bill on time; payment history is the biggest factor in most scores.
A: Keep your credit card balances low, ideally under 30% of your limits.
A: Avoid opening many new accounts at once, and keep older accounts open.
A: Check your credit report for errors and dispute any you find.
W: 2 | Max out your credit cards every month, since high balances show lenders you use credit.

Q: What should I pack for a day hike?
S: packing for a hike
A: Bring the essentials: water, snacks, a map or offline GPS, and a headlamp.
A: Pack layers, including a rain jacket, even if the forecast looks good.
A: Add a small first-aid kit, sunscreen, and a whistle.
A: Wear broken-in hiking boots and tell someone your route and return time.

Q: How can I deal with jet lag after a long flight?
S: jet lag
A: Switch to the destination's schedule as soon as you board, including meal times.
A: Get outside in daylight in the morning at your destination; light resets your body clock.
A: Keep naps short, under 30 minutes, and avoid alcohol and late caffeine.
W: 2 | Stay in a dark room for the first two days, since daylight makes jet lag worse.

Q: How do I make a strong password?
S: strong passwords
A: Use at least 12 to 16 characters; length matters more than complexity.
A: A passphrase of four or more random words is strong and easy to remember.
A: Never reuse a password across sites, and use a password manager to keep track of them.
A: Turn on two-factor authentication wherever it's offered.
W: 1 | Use exactly 6 characters; shorter passwords are harder for computers to guess.

Q: How do I take a screenshot on Windows?
S: taking screenshots on Windows
A: Press Windows + Shift + S to open the Snipping Tool and select an area of the screen.
A: Press the Print Screen key to copy the whole screen to the clipboard.
A: Press Windows + Print Screen to save a full screenshot straight to Pictures > Screenshots.
W: 1 | Press Ctrl + Alt + Delete to open the Snipping Tool and select an area of the screen.

Q: How do I back up the photos on my phone?
S: backing up photos
A: Turn on a cloud backup such as Google Photos or iCloud Photos so new pictures upload automatically.
A: Check that you have enough cloud storage for your whole library.
A: For a second copy, connect the phone to a computer every few months and copy the photos to an external drive.

Q: Why is my laptop running so slowly?
S: a slow laptop
A: Too many programs running at once, especially ones that start automatically, is a common cause.
A: A nearly full disk can also slow things down; try to keep at least 10 to 15% free.
A: Restart it, install system updates, and scan for malware.
A: If it's an older machine with a hard drive, upgrading to an SSD often makes a big difference.

Q: What is a VPN and do I need one?
S: VPNs
A: A VPN encrypts your internet traffic and routes it through a server run by the VPN provider.
A: It's useful on public Wi-Fi and for hiding your browsing from your internet provider.
A: It doesn't make you anonymous, since the VPN provider can see your traffic, so choose a trustworthy one.
W: 3 | It makes you completely anonymous online, so no website or provider can ever identify you.

Q: How do I politely decline a wedding invitation?
S: declining an invitation
A: Reply promptly so the couple can plan their numbers.
A: Thank them warmly and say you're sorry you can't make it; you don't need to over-explain.
A: Wish them a wonderful day, and consider sending a card or gift.

Q: How can I be more productive when working from home?
S: working from home
A: Set a regular start and end time, and keep a dedicated workspace if you can.
A: Plan your three most important tasks each morning.
A: Work in focused blocks of 25 to 50 minutes, with short breaks in between.
A: Mute notifications during deep work and check messages at set times.

Q: How do I start running if I'm a complete beginner?
S: starting to run
A: Begin with run-walk intervals, such as one minute running and two minutes walking, for 20 to 30 minutes.
A: Run three times a week with rest days in between.
A: Increase your total running time gradually, by about 10% a week at most.
A: Get comfortable shoes and keep the pace easy enough to talk.
W: 3 | Increase your distance by at least 50% every week so your body adapts faster.

Q: How much sleep do adults need?
S: sleep needs
A: Most adults need 7 to 9 hours of sleep a night.
A: Teenagers need more, about 8 to 10 hours.
A: Regularly getting less than 7 hours is linked to poorer concentration and health.
W: 1 | Most adults need only 4 to 5 hours of sleep a night.

Q: What's a good way to learn a new language as an adult?
S: learning a language
A: Practice a little every day; 20 focused minutes beats one long weekly session.
A: Learn the most common words and phrases first, using spaced-repetition flashcards.
A: Listen to podcasts or shows in the language, and speak with a tutor or exchange partner early on.
A: Don't wait to be perfect; making mistakes is part of learning.

Q: How can I reduce stress before an exam?
S: exam stress
A: Make a study schedule that breaks the material into small daily chunks.
A: Test yourself with practice questions instead of just rereading notes.
A: Sleep well the night before; an all-nighter usually hurts recall.
A: On the day, eat something, arrive early, and take a few slow breaths before starting.
W: 3 | Stay up all night before the exam; skipping sleep is the best way to lock in what you studied.

Q: How do I write a good cover letter?
S: cover letters
A: Address it to a specific person if you can, and name the role you're applying for.
A: In one or two paragraphs, connect your most relevant achievements to the job's requirements.
A: Show why you want this company in particular, not just any job.
A: Keep it under one page and end with a clear, polite call to action.

Q: How do I give constructive feedback to a coworker?
S: giving feedback
A: Do it privately and soon after the event, while the details are fresh.
A: Describe the specific behavior and its impact, not the person's character.
A: Suggest what could work better and ask for their perspective.
A: End on a supportive note, and follow up later.

Q: What should I do if I lose my wallet?
S: a lost wallet
K: howto
A: Retrace your steps and call places you visited recently.
A: Call your bank to freeze or cancel your cards right away.
A: Report the loss to the police if you need a report to replace your ID.
A: Request replacements for your driver's license and other ID cards.

Q: How can I save money on groceries?
S: saving on groceries
A: Plan the week's meals and shop from a list.
A: Buy store brands, which are often similar in quality but cheaper.
A: Compare unit prices, and buy staples like rice and beans in bulk.
A: Use up leftovers, and check what's in the fridge before shopping.

Q: How do I choose a good watermelon?
S: choosing a watermelon
A: Look for a creamy yellow field spot on the bottom, where it rested on the ground.
A: It should feel heavy for its size, which means it's full of water.
A: Tap it: a ripe melon sounds deep and hollow.
W: 1 | Look for a bright white field spot, which means it ripened longest in the sun.

Q: What are some ways to be a better listener?
S: listening skills
A: Give the speaker your full attention and put your phone away.
A: Let them finish before you respond, instead of planning your reply.
A: Ask open questions and summarize what you heard to check you understood.

Q: How do I get my toddler to eat vegetables?
S: picky eating
A: Offer vegetables often and without pressure; many children need 10 or more tries to accept a new food.
A: Serve a small amount next to foods they already like.
A: Eat vegetables yourself in front of them, and let them help wash or choose them.
W: 1 | Offer a vegetable once; if a child refuses it the first time, they will never like it.

Q: Should I stretch before or after running?
S: stretching and running
A: Before a run, do a short dynamic warm-up, such as leg swings, lunges, and easy jogging.
A: Save longer static stretches, where you hold a position for 20 to 30 seconds, for after the run.
A: Holding static stretches on cold muscles before running can slightly reduce performance.

Q: How can I make a long car trip with kids easier?
S: road trips with kids
A: Plan stops every two hours so everyone can stretch and use the bathroom.
A: Pack snacks, water, and a bag of small activities within reach.
A: Download audiobooks or shows in advance in case you lose signal.
A: Leave early in the morning or at nap time if your children sleep in the car.

Q: What's the best way to clean a laptop keyboard?
S: cleaning a keyboard
K: howto
A: Shut down the laptop and unplug it first.
A: Tip it upside down and gently tap it to let crumbs fall out, then use compressed air between the keys.
A: Wipe the keys with a cloth lightly dampened with isopropyl alcohol, never dripping wet.
W: 3 | Rinse the keyboard under the tap with warm soapy water; laptops are sealed against water.

Q: How do I speed up my home Wi-Fi?
S: slow Wi-Fi
A: Put the router in a central, open spot, away from thick walls, metal, and microwaves.
A: Restart the router and install any firmware updates.
A: Use the 5 GHz band for devices close to the router; it's faster but has a shorter range.
A: For large homes, a mesh system covers dead spots better than a single router.
W: 3 | Use the 5 GHz band for devices far from the router; it reaches farther through walls than 2.4 GHz.

Q: How can I stop procrastinating?
S: procrastination
A: Break the task into a first step so small it feels easy, like opening the document.
A: Set a timer for 25 minutes and work only on that task until it rings.
A: Remove distractions, for example by putting your phone in another room.
A: Reward yourself after finishing a block, and be kind to yourself when you slip.

Q: What should I look for when buying a used car?
S: buying a used car
A: Check the vehicle history report for accidents and confirm the mileage.
A: Have an independent mechanic inspect it before you buy.
A: Test-drive it on both city streets and the highway, listening for odd noises.
A: Compare the price with market guides and be ready to walk away.

Q: What is a good way to memorize a speech?
S: memorizing a speech
A: Learn the structure first: the main points in order, rather than every word.
A: Rehearse out loud in sections, adding one section at a time.
A: Practice in front of a mirror or a friend, and keep short note cards with keywords as a backup.

Q: How do I treat a minor burn at home?
S: treating a minor burn
K: howto
A: Cool the burn under cool running water for about 20 minutes.
A: Remove rings or tight items near the area before it swells.
A: Cover it loosely with a sterile, non-stick dressing or cling film.
A: Don't put ice, butter, or toothpaste on it, and see a doctor if it's large or blistering badly.
W: 1 | Put ice directly on the burn for an hour, then rub butter on it to seal it.

Q: What should I do when a friend is grieving?
S: supporting a grieving friend
A: Reach out and say simply that you're sorry and that you're thinking of them.
A: Offer specific help, like bringing a meal or running an errand, rather than a vague "let me know".
A: Listen more than you talk, and keep checking in over the following weeks, not just the first days.

Q: How can I improve my posture while sitting at a desk?
S: desk posture
A: Set the top of your screen at or slightly below eye level, about an arm's length away.
A: Keep your feet flat on the floor and your knees roughly level with your hips.
A: Sit back in the chair with your lower back supported.
A: Stand up and move for a few minutes every half hour.

Q: How early should I get to the airport for an international flight?
S: airport timing
A: For an international flight, aim to arrive about three hours before departure.
A: For domestic flights, two hours is usually enough.
A: Check your airline's bag-drop cutoff and allow extra time during busy holiday periods.
W: 1 | For an international flight, arriving 20 minutes before departure is plenty.

Q: How do I keep my cat from scratching the sofa?
S: cats scratching furniture
A: Give the cat a sturdy scratching post that's tall enough for it to stretch fully.
A: Place it right next to the sofa, and reward the cat with treats when it uses it.
A: Cover the sofa corners with double-sided tape, which cats dislike.
A: Trim the cat's claws every couple of weeks.

Q: How often should I bathe my dog?
S: bathing a dog
A: Most dogs need a bath about once a month, or when they get dirty or smelly.
A: Bathing too often can dry out their skin by stripping its natural oils.
A: Use a shampoo made for dogs, since human shampoo has the wrong pH for their skin.
W: 3 | Use regular human shampoo, since dogs and people have exactly the same skin pH.

Q: What are the benefits of regular exercise?
S: exercise
A: Regular exercise strengthens the heart and lungs and lowers the risk of heart disease and type 2 diabetes.
A: It improves mood and sleep and can reduce anxiety.
A: It builds muscle and bone strength, which helps with balance as you age.
A: Adults are advised to get about 150 minutes of moderate activity a week.
W: 4 | Adults are advised to get about 15 minutes of moderate activity a month.

Q: What's the best way to apologize to someone?
S: apologizing
A: Say "I'm sorry" clearly and name what you did, without adding "but".
A: Acknowledge how it affected the other person.
A: Explain what you'll do differently, and then follow through.

Q: When did World War II end?
S: the end of World War II
A: World War II ended in 1945.
A: Germany surrendered in May 1945, and Japan formally surrendered on September 2, 1945.
A: Japan's surrender followed the atomic bombings of Hiroshima and Nagasaki in August.
W: 1 | World War II ended in 1951.
W: 2 | Germany surrendered in May 1951, and Japan formally surrendered on September 2, 1951.

Q: Who wrote "Pride and Prejudice"?
S: Pride and Prejudice
A: "Pride and Prejudice" was written by Jane Austen.
A: It was published in 1813.
A: It follows Elizabeth Bennet and her changing opinion of the proud Mr. Darcy.
W: 1 | "Pride and Prejudice" was written by Charlotte Brontë.

Q: What is the capital of Australia?
S: Australia's capital
A: The capital of Australia is Canberra.
A: Many people guess Sydney or Melbourne, but Canberra was chosen as a compromise between those two rival cities.
A: It became the seat of government in 1927.
W: 1 | The capital of Australia is Sydney.
W: 2 | Many people guess Canberra, but Sydney has been the capital since the country was founded.

Q: How many continents are there, and what are they?
S: the continents
A: By the most common count there are seven continents.
A: They are Africa, Antarctica, Asia, Australia (or Oceania), Europe, North America, and South America.
A: Some countries teach other models, such as counting the Americas as one continent.
W: 1 | By the most common count there are nine continents.

Q: Who painted the Mona Lisa?
S: the Mona Lisa
A: The Mona Lisa was painted by Leonardo da Vinci.
A: He began it around 1503 and kept working on it for years.
A: It hangs in the Louvre in Paris.
W: 1 | The Mona Lisa was painted by Michelangelo.

Q: What is the longest river in the world?
S: the world's longest river
A: The Nile, at about 6,650 km, is usually listed as the longest river in the world.
A: Some researchers argue the Amazon is slightly longer, depending on where its source is measured.
A: Either way, the Amazon carries far more water than any other river.
W: 1 | The Mississippi, at about 9,000 km, is usually listed as the longest river in the world.

Q: When did humans first land on the Moon?
S: the Moon landing
A: Humans first landed on the Moon on July 20, 1969, during NASA's Apollo 11 mission.
A: Neil Armstrong was the first to step onto the surface, followed by Buzz Aldrin.
A: Michael Collins stayed in orbit in the command module.
W: 1 | Humans first landed on the Moon on July 20, 1972, during NASA's Apollo 11 mission.

Q: What was the Renaissance?
S: the Renaissance
A: The Renaissance was a period of renewed interest in classical Greek and Roman art and learning.
A: It began in Italy in the 14th century and spread across Europe into the 17th century.
A: It produced artists such as Leonardo da Vinci and Michelangelo, and major advances in science.
W: 2 | It began in Russia in the 19th century and spread across Asia.

Q: Why did the Titanic sink?
S: the Titanic
A: The Titanic struck an iceberg on the night of April 14, 1912, which opened several of its forward compartments to the sea.
A: Too many compartments flooded for the ship to stay afloat, and it sank early on April 15.
A: There were not enough lifeboats for everyone, and more than 1,500 people died.
W: 1 | A boiler exploded on the night of April 14, 1912, which tore the Titanic's hull in half.

Q: What is the tallest mountain in the world?
S: the tallest mountain
A: Mount Everest is the highest mountain above sea level, at about 8,849 meters.
A: It sits on the border between Nepal and China (Tibet) in the Himalayas.
A: Measured from base to peak, Mauna Kea in Hawaii is taller, but most of it is underwater.
W: 1 | Mount Everest is the highest mountain above sea level, at about 12,500 meters.

Q: Who was the first President of the United States?
S: the first US president
A: George Washington was the first President of the United States.
A: He served two terms, from 1789 to 1797.
A: He had earlier led the Continental Army during the Revolutionary War.
W: 2 | He served four terms, from 1776 to 1792.

Q: What language is spoken in Brazil?
S: Brazil's language
A: The official language of Brazil is Portuguese.
A: It comes from Portugal's colonization of the region starting in 1500.
A: Brazil is the largest Portuguese-speaking country in the world.
W: 1 | The official language of Brazil is Spanish.
W: 3 | Brazil is the largest Spanish-speaking country in the world.

Q: Why did the Berlin Wall fall?
S: the Berlin Wall
A: The Berlin Wall fell on November 9, 1989, after weeks of mass protests in East Germany.
A: A confused announcement that the border was open sent crowds to the checkpoints, and the guards let them through.
A: Reforms in the Soviet Union under Gorbachev had also weakened the East German government.
W: 1 | The Berlin Wall fell on November 9, 1979, after weeks of mass protests in East Germany.

Q: What is the Great Wall of China, and how long is it?
S: the Great Wall of China
A: The Great Wall is a series of fortifications built across northern China over many centuries to defend against invasions.
A: Most of what stands today was built during the Ming dynasty.
A: Including all its branches, it measures about 21,000 km.
W: 3 | Including all its branches, it measures about 800 km.

Q: Who invented the telephone?
S: the telephone
A: Alexander Graham Bell is credited with inventing the telephone and received the first US patent for it in 1876.
A: Other inventors, such as Elisha Gray and Antonio Meucci, worked on similar devices around the same time.
W: 1 | Thomas Edison is credited with inventing the telephone and received the first US patent for it in 1901.

Q: What is the smallest country in the world?
S: the smallest country
A: Vatican City is the smallest country in the world, at about 0.44 square kilometers.
A: It is surrounded by the city of Rome, Italy.
A: It is the seat of the Pope and the Catholic Church.
W: 1 | Monaco is the smallest country in the world, at about 0.01 square kilometers.

Q: What is the difference between weather and climate?
S: weather and climate
A: Weather is the state of the atmosphere at a given time and place, like today's rain or temperature.
A: Climate is the average pattern of weather in a region over a long period, usually 30 years or more.
A: In short, weather is what you get on a given day, and climate is what you expect.
W: 2 | Climate is the weather over the next week or two, as shown in a forecast.

Q: What was the Magna Carta?
S: the Magna Carta
A: The Magna Carta was a charter agreed to by King John of England in 1215.
A: It limited the king's power and stated that he, too, was subject to the law.
A: It is seen as an early foundation for ideas like the right to a fair trial.
W: 1 | The Magna Carta was a charter agreed to by Queen Elizabeth I of England in 1588.

Q: How many players are on a soccer team?
S: soccer teams
A: Each soccer team has 11 players on the field, including the goalkeeper.
A: A squad also includes substitutes on the bench.
A: In most professional competitions, five substitutions are allowed per match.
W: 1 | Each soccer team has 9 players on the field, including the goalkeeper.

Q: How does scoring work in tennis?
S: tennis scoring
A: Points in a game go 0 (love), 15, 30, 40, then game.
A: At 40-40, called deuce, a player must win two points in a row to take the game.
A: Six games win a set, with a two-game margin or a tiebreak, and matches are best of three or five sets.
W: 1 | Points in a game go 0 (love), 10, 20, 30, then game.

Q: How often are the Summer Olympics held?
S: the Olympic Games
A: The Summer Olympics are held every four years.
A: The Winter Olympics are also held every four years, two years apart from the summer games.
A: The modern Olympics began in Athens in 1896.
W: 3 | The modern Olympics began in Paris in 1924.

Q: Who wrote "Romeo and Juliet"?
S: Romeo and Juliet
A: "Romeo and Juliet" was written by William Shakespeare.
A: It was first performed in the mid-1590s.
A: It tells the story of two young lovers from feuding families in Verona.
W: 1 | "Romeo and Juliet" was written by Charles Dickens.
W: 2 | It was first published in 1850.

Q: Roughly how many people live on Earth right now?
S: world population
A: The world population is a little over 8 billion people.
A: It passed 8 billion in late 2022, according to the United Nations.
A: India and China are the two most populous countries, each with more than 1.4 billion people.
W: 1 | The world population is about 20 billion people.
W: 2 | It passed 20 billion in late 2022, according to the United Nations.

Q: What currency is used in Japan?
S: Japan's currency
A: Japan uses the yen, written with the symbol ¥.
A: Coins go up to 500 yen, and common banknotes are 1,000, 5,000, and 10,000 yen.
A: Cash is still widely used there, so it's useful to carry some when traveling.
W: 1 | Japan uses the won, written with the symbol ₩.

Q: Why do we have leap years?
S: leap years
A: A year, the time Earth takes to orbit the Sun, is about 365.24 days, not exactly 365.
A: Adding a day, February 29, roughly every four years keeps the calendar in step with the seasons.
A: Century years are leap years only if divisible by 400, so 2000 was a leap year but 1900 was not.
W: 3 | Every century year is a leap year, so both 1900 and 2000 were leap years.

Q: What is the Statue of Liberty made of?
S: the Statue of Liberty
A: The Statue of Liberty has a copper skin over an iron framework designed by Gustave Eiffel.
A: Its green color is a patina that formed as the copper oxidized over the years.
A: It was a gift from France and was dedicated in 1886.
W: 1 | The Statue of Liberty is carved from a single block of green marble.

Q: Who was Cleopatra?
S: Cleopatra
A: Cleopatra VII was the last active ruler of the Ptolemaic Kingdom of Egypt.
A: She ruled from 51 to 30 BC and was allied first with Julius Caesar and later with Mark Antony.
A: After their defeat by Octavian, the future emperor Augustus, Egypt became a Roman province.
W: 2 | She ruled from 510 to 470 BC and was allied with Alexander the Great.

Q: What is the difference between a crocodile and an alligator?
S: crocodiles and alligators
A: Alligators have a wide, U-shaped snout, while crocodiles have a narrower, V-shaped one.
A: When a crocodile closes its mouth, its lower teeth still show; an alligator's mostly don't.
A: Alligators live mainly in the United States and China, while crocodiles are found across the tropics.
W: 1 | Alligators have a narrow, V-shaped snout, while crocodiles have a wide, U-shaped one.

Q: What's the origin of Halloween?
S: Halloween
A: Halloween grew out of Samhain, an ancient Celtic festival marking the end of harvest and the start of winter.
A: People believed the boundary between the living and the dead was thin that night.
A: The name comes from "All Hallows' Eve", the evening before the Christian All Saints' Day on November 1.

Q: What does GDP mean?
S: GDP
A: GDP, or gross domestic product, is the total value of goods and services produced in a country over a period, usually a year.
A: It is a common measure of the size of an economy.
A: GDP per person is often used to compare living standards, though it ignores things like inequality.
W: 1 | GDP, or government debt percentage, is the share of a country's income owed to foreign banks.

Q: What is inflation?
S: inflation
A: Inflation is the general rise in prices over time, which means each unit of money buys less.
A: It is usually measured with a consumer price index, which tracks the cost of a basket of common goods.
A: Many central banks aim for low, steady inflation of around 2% a year.
W: 3 | Many central banks aim for high inflation of around 20% a year.

Q: How do supply and demand affect prices?
S: supply and demand
A: Supply and demand describe how prices are set in a market.
A: When demand rises and supply stays the same, prices tend to go up; when supply rises and demand stays the same, prices tend to fall.
A: The price at which the amount buyers want equals the amount sellers offer is called the equilibrium price.
W: 2 | When demand rises and supply stays the same, prices tend to go down; when supply rises, prices tend to go up.

Q: What's the difference between "affect" and "effect"?
S: affect and effect
A: "Affect" is usually a verb meaning to influence: the rain affected the game.
A: "Effect" is usually a noun meaning a result: the rain had an effect on the game.
A: A quick trick: Affect is an Action, and Effect is an End result.
W: 1 | "Affect" is usually a noun meaning a result: the rain had an affect on the game.
W: 2 | "Effect" is usually a verb meaning to influence: the rain effected the game.

Q: When should I use "fewer" versus "less"?
S: fewer and less
A: Use "fewer" for things you can count: fewer cars, fewer mistakes.
A: Use "less" for amounts you can't count individually: less water, less time.
A: So careful writing says "fewer than ten items", even if you often see "less" on signs.
W: 1 | Use "fewer" for amounts you can't count: fewer water, fewer time.

Q: What is a haiku?
S: haiku
A: A haiku is a short Japanese poem form with three lines.
A: In English, it usually follows a 5-7-5 syllable pattern.
A: Traditional haiku focus on nature and often include a word hinting at the season.
W: 2 | In English, it usually follows a 7-5-7 syllable pattern.

Q: What is the difference between a simile and a metaphor?
S: similes and metaphors
A: Both compare two things, but a simile uses "like" or "as": her smile was like sunshine.
A: A metaphor says one thing is another: her smile was sunshine.
A: Metaphors tend to feel stronger and more direct, while similes make the comparison explicit.
W: 1 | Both compare two things, but a metaphor uses "like" or "as": her smile was like sunshine.
W: 2 | A simile says one thing is another: her smile was sunshine.

Q: Who was Martin Luther King Jr.?
S: Martin Luther King Jr.
A: Martin Luther King Jr. was an American minister and a leader of the civil rights movement.
A: He championed nonviolent protest and gave the "I Have a Dream" speech in Washington in 1963.
A: He received the Nobel Peace Prize in 1964 and was assassinated in 1968.
W: 2 | He championed nonviolent protest and gave the "I Have a Dream" speech in Chicago in 1983.

Q: What is the Amazon rainforest and why is it important?
S: the Amazon rainforest
A: The Amazon is the largest tropical rainforest on Earth, covering much of Brazil and parts of eight other countries.
A: It is home to an enormous share of the world's plant and animal species.
A: It stores vast amounts of carbon and helps regulate rainfall across South America.
W: 1 | The Amazon is a small temperate forest located mostly in Mexico.

Q: When was the Eiffel Tower built?
S: the Eiffel Tower
A: The Eiffel Tower was built for the 1889 World's Fair in Paris and completed that year.
A: It was designed and built by Gustave Eiffel's engineering company, in wrought iron.
A: At about 330 meters today, it was the tallest structure in the world until 1930.
W: 1 | The Eiffel Tower was built for the 1925 World's Fair in Paris and completed that year.

Q: Which ocean is the largest?
S: the largest ocean
A: The Pacific Ocean is the largest ocean on Earth.
A: It covers about a third of the planet's surface, more than all the land combined.
A: It also contains the deepest point on Earth, the Mariana Trench.
W: 1 | The Atlantic Ocean is the largest ocean on Earth.

Q: What did the Wright brothers do?
S: the Wright brothers
A: Orville and Wilbur Wright made the first controlled, powered airplane flight.
A: It took place on December 17, 1903, near Kitty Hawk, North Carolina.
A: The first flight lasted 12 seconds and covered about 37 meters.
W: 2 | It took place on December 17, 1923, near Kitty Hawk, North Carolina.

Q: How big is the Sahara desert?
S: the Sahara
A: The Sahara covers about 9 million square kilometers, roughly the size of the United States.
A: It is the largest hot desert in the world, stretching across much of North Africa.
A: Despite its reputation, only a fraction of it is sand dunes; much of it is rocky plateau.
W: 1 | The Sahara covers about 90,000 square kilometers, roughly the size of Portugal.

Q: Who discovered penicillin?
S: penicillin
A: Penicillin was discovered by Alexander Fleming in 1928.
A: He noticed that a mold, Penicillium, killed the bacteria growing in a dish in his lab.
A: It became a mass-produced medicine during World War II, thanks to Howard Florey and Ernst Chain.
W: 1 | Penicillin was discovered by Louis Pasteur in 1802.

Q: What is the capital of Canada?
S: Canada's capital
A: The capital of Canada is Ottawa, in the province of Ontario.
A: Queen Victoria chose it in 1857, partly as a compromise between English- and French-speaking regions.
A: Toronto is the largest city, which is why people sometimes guess it.
W: 1 | The capital of Canada is Toronto, in the province of Ontario.
W: 3 | Ottawa is also the largest city, which is why it was chosen.

Q: What is the Mediterranean diet?
S: the Mediterranean diet
A: The Mediterranean diet is based on traditional eating in countries like Greece, Italy, and Spain.
A: It emphasizes vegetables, fruit, whole grains, beans, nuts, fish, and olive oil.
A: Red meat and sweets are eaten only occasionally.
A: Research links it to lower rates of heart disease.
W: 2 | It emphasizes red meat, butter, and sugary desserts at most meals.

Q: Who was Marie Curie?
S: Marie Curie
A: Marie Curie was a Polish-born French physicist and chemist who pioneered research on radioactivity.
A: She discovered the elements polonium and radium together with her husband, Pierre.
A: She was the first woman to win a Nobel Prize, and the first person to win in two different sciences.
W: 2 | She discovered the elements uranium and oxygen together with her husband, Pierre.

Q: What is the difference between the UK, Great Britain, and England?
S: the UK, Great Britain, and England
A: England is one country within the United Kingdom.
A: Great Britain is the island containing England, Scotland, and Wales.
A: The United Kingdom is Great Britain plus Northern Ireland.
W: 3 | The United Kingdom is Great Britain plus the Republic of Ireland.

Q: What is the Rosetta Stone?
S: the Rosetta Stone
A: The Rosetta Stone is a stone slab from 196 BC carrying the same decree in hieroglyphic, Demotic, and ancient Greek script.
A: Because scholars could read the Greek, it became the key to deciphering Egyptian hieroglyphs.
A: Jean-François Champollion announced his breakthrough in 1822; the stone is in the British Museum.
W: 3 | Napoleon himself deciphered it in 1750; the stone is now kept in the Louvre.

Q: What is the International Space Station?
S: the International Space Station
A: The ISS is a large space station in low Earth orbit, run jointly by the US, Russia, Europe, Japan, and Canada.
A: It orbits about 400 km above Earth, circling the planet roughly every 90 minutes.
A: Astronauts have lived aboard continuously since November 2000.
W: 2 | It orbits about 40,000 km above Earth, circling the planet once a week.

Q: How many time zones does Russia have?
S: Russia's time zones
A: Russia has 11 time zones, the most of any single contiguous country.
A: They run from Kaliningrad in the west to Kamchatka in the far east.
A: When it's morning in Moscow, it's already evening in Kamchatka.
W: 1 | Russia has 3 time zones, the most of any single contiguous country.

Q: What's the difference between a hurricane, a typhoon, and a cyclone?
S: tropical storms
A: They are the same kind of storm, a strong tropical cyclone; the name depends on where it forms.
A: In the Atlantic and northeast Pacific it's a hurricane, and in the northwest Pacific it's a typhoon.
A: In the Indian Ocean and South Pacific it's simply called a cyclone.
W: 1 | They are completely different storms: hurricanes form over land, typhoons over ice, and cyclones only over deserts.

Q: Write a two-sentence thank-you note to a neighbor who watered my plants while I was away.
S: a thank-you note
K: prose
A: Thank you so much for watering my plants while I was away; they look even happier than when I left!
A: Please let me know if I can ever return the favor.
V: Dear neighbor, I wanted to write to you today to say thank you. I was away for a while. While I was away, you watered my plants. They are all alive. I am very grateful. I hope you are well. Please let me know if I can ever help you. Thanks again for everything. Best wishes from next door.

Q: Write a haiku about autumn leaves.
S: an autumn haiku
K: poem
A: Red leaves drift and spin,
A: the old maple lets them go
A: one by one, like time.
V: Autumn leaves are falling down,\nred and yellow, gold and brown,\nthey dance across the sleepy town\nand make the ground a crunchy gown.

Q: Suggest three names for a cozy neighborhood coffee shop.
S: coffee shop names
A: The Daily Grind Corner: friendly, and it hints at a regular morning stop.
A: Maple & Mug: warm and homey, great for a shop with wooden decor.
A: The Porch Light: suggests a welcoming place where neighbors gather.
V: Sure! Coffee shops are great. Here are some ideas: Bean There, The Daily Grind Corner, Maple & Mug, The Porch Light, Brew Haven, Cup of Joy, Steam Street, Perk Place, and The Cozy Cup. Let me know if you want more.

Q: Write a short, friendly out-of-office email reply.
S: an out-of-office reply
K: prose
A: Hi, thanks for your email!
A: I'm out of the office until Monday, June 10, with limited access to email.
A: For anything urgent, please contact my colleague Sam at sam@example.com.
A: I'll reply as soon as I'm back.

Q: Write a one-sentence description of a lighthouse for a children's story.
S: a lighthouse description
K: prose
A: The tall white lighthouse stood on the rocks like a friendly giant, sweeping its golden light across the sea so every little boat could find its way home.
V: The lighthouse was tall. It was white with a red stripe. It stood on the rocks by the sea. Every night its light went round and round. Boats could see it from far away. The children loved it very much.

Q: Give me a catchy slogan for a bike-sharing service.
S: a bike-sharing slogan
K: prose
A: "Grab a bike, skip the traffic, own the city."
A: It's short and action-focused, and it highlights the main benefit: getting around faster.

Q: Write a polite message to my landlord asking them to fix a leaking kitchen tap.
S: a message to a landlord
K: prose
A: Hi Ms. Patel, I hope you're well.
A: The kitchen tap in my apartment has started leaking steadily, even when it's fully closed.
A: Could you arrange for someone to repair it this week?
A: I'm home most evenings, so any time after 5 pm works. Thank you!

Q: Write a short birthday message for a coworker I don't know very well.
S: a birthday message
K: prose
A: Happy birthday! Wishing you a relaxing day and a great year ahead.
A: I hope the team finds some cake for you!

Q: Summarize the plot of "Cinderella" in two sentences.
S: Cinderella
K: prose
A: Cinderella, mistreated by her stepmother and stepsisters, goes to a royal ball with help from her fairy godmother but must leave at midnight, losing a glass slipper.
A: The prince searches the kingdom with the slipper, finds that it fits Cinderella, and they marry.
W: 2 | The prince searches the kingdom with the slipper, finds that it fits one of the stepsisters, and marries her instead.
V: Cinderella is a girl whose father remarries. Her stepmother is cruel. Her two stepsisters are mean too. They make her do all the chores. One day there is a ball. A fairy godmother appears. She turns a pumpkin into a coach. Cinderella dances with the prince. At midnight she runs away and loses her slipper. The prince looks everywhere. The slipper fits her. They get married.

Q: Give me a short toast for my sister's wedding.
S: a wedding toast
K: prose
A: Everyone, please raise your glasses to my sister and her new husband, Daniel.
A: I've watched her grow into the kindest, bravest person I know, and seeing how happy he makes her is the best gift our family could ask for.
A: May your home always be full of laughter, patience, and good food. To the happy couple!

Q: Write a product description for a reusable water bottle in under 50 words.
S: a product description
K: prose
A: Stay hydrated in style with our insulated stainless steel bottle.
A: It keeps drinks cold for 24 hours or hot for 12, fits most cup holders, and has a leak-proof lid.
A: Durable, BPA-free, and made to replace hundreds of plastic bottles.
V: Introducing the bottle you've been waiting for! Our reusable water bottle is made from premium stainless steel with double-wall vacuum insulation. It keeps drinks cold for 24 hours or hot for 12. The leak-proof lid means no more spills in your bag. It fits most cup holders and backpack pockets. It's BPA-free and dishwasher-safe, and it comes in eight colors. Every bottle replaces hundreds of plastic ones, so you help the planet too. Order yours today!

Q: What is a good opening line for a mystery novel?
S: an opening line
K: prose
A: "The letter arrived three days after the funeral, and it was written in my grandmother's handwriting."
A: It raises an immediate question and gives the reader a reason to keep going.

Q: Can you give me three tips for writing a clear email?
S: writing clear emails
A: Put your main point or request in the first two sentences.
A: Keep paragraphs short and use a specific subject line, like "Budget approval needed by Friday".
A: End with a clear next step, such as a question or a deadline.
V: Sure! Here are some tips: Put your main point first. Keep paragraphs short. Use a specific subject line. Avoid jargon. Use bullet points for lists. Proofread before sending. Don't write in all caps. Be polite. Add a clear deadline. Keep the recipient list small. Attach files before you start typing.

Q: Rewrite this sentence to be more formal: "Hey, can you send me that report ASAP?"
S: formal rewriting
K: prose
A: "Hello, could you please send me the report at your earliest convenience?"
A: This keeps the request clear while adding a polite greeting and avoiding abbreviations like "ASAP".

Q: Write a limerick about a cat who loves boxes.
S: a cat limerick
K: poem
A: There once was a cat named Louise
A: who found every box a sweet tease;
A: she'd squeeze into small ones,
A: ignore the big tall ones,
A: and nap in them snug as you please.

Q: What are some good names for a golden retriever puppy?
S: puppy names
A: A few ideas that suit a golden retriever: Sunny, Maple, Honey, Biscuit, and Goldie.
A: Pick a name with one or two syllables, which is easy for a puppy to recognize.
A: Try calling it out loud a few times to see which one feels natural.

Q: Write a short motivational message for a friend running their first marathon.
S: a motivational message
K: prose
A: You've put in the miles, the early mornings, and the sore legs; tomorrow is your victory lap.
A: Start slow, enjoy the crowd, and remember how far you've come.
A: I'll be cheering for you at the finish!

Q: What does "opportunity cost" mean?
S: opportunity cost
A: Opportunity cost is the value of the best alternative you give up when you make a choice.
A: For example, if you spend Saturday working an extra shift, the opportunity cost might be a day hiking with friends.
A: It reminds you that every choice has a hidden cost, even when no money changes hands.
W: 1 | Opportunity cost is the fee a bank charges you for opening a new account.

Q: What is the difference between a Roth IRA and a traditional IRA?
S: IRAs
A: With a traditional IRA, contributions may be tax-deductible now, and you pay income tax when you withdraw in retirement.
A: With a Roth IRA, you contribute money that has already been taxed, and qualified withdrawals in retirement are tax-free.
A: A Roth often makes sense if you expect to be in a higher tax bracket later.
W: 2 | With a Roth IRA, you contribute pre-tax money and pay tax on every withdrawal, exactly like a traditional IRA.

Q: What is cognitive behavioral therapy?
S: cognitive behavioral therapy
A: Cognitive behavioral therapy, or CBT, is a talking therapy that helps people notice and change unhelpful patterns of thinking and behavior.
A: It is usually short-term and structured, often around 6 to 20 sessions.
A: It has strong evidence for treating anxiety and depression, among other conditions.
W: 2 | It usually lasts a lifetime, with daily sessions that never end.

Q: What is the difference between a stock and a bond?
S: stocks and bonds
A: A stock is a share of ownership in a company; its value rises and falls with the company's fortunes.
A: A bond is a loan to a company or government that pays interest and returns your money on a set date.
A: Stocks usually offer higher long-term returns but with more risk; bonds are generally steadier.
W: 1 | A stock is a loan to a company that always pays a guaranteed 10% interest.

Q: What is the placebo effect?
S: the placebo effect
A: The placebo effect is a real improvement in symptoms after a treatment with no active ingredient, such as a sugar pill.
A: It happens because expectations can change how we feel, especially pain and fatigue.
A: That's why clinical trials compare new drugs against a placebo.

Q: What does "carbon footprint" mean?
S: carbon footprint
A: A carbon footprint is the total amount of greenhouse gases caused by a person, product, or organization, usually counted in tonnes of CO2 equivalent.
A: It includes direct emissions, like burning fuel in a car, and indirect ones, like producing the food you buy.
A: Flying less, using less energy at home, and eating less red meat are common ways to reduce it.

Q: What is the difference between empathy and sympathy?
S: empathy and sympathy
A: Empathy is sharing or understanding someone's feelings from their point of view: "I can imagine how painful that is."
A: Sympathy is feeling concern or pity for someone from the outside: "I'm sorry that happened to you."
A: Empathy tends to build connection because the person feels understood.

Q: What is a mortgage?
S: mortgages
A: A mortgage is a loan used to buy a home, where the property itself serves as security for the loan.
A: You repay it in monthly installments of principal and interest, commonly over 15 to 30 years.
A: If you stop paying, the lender can take the home through foreclosure.
W: 2 | You repay it in a single lump sum at the end of the first year.

Q: What does a project manager do?
S: project management
A: A project manager plans a project and sets its goals, schedule, and budget.
A: They assign the work, track progress, remove obstacles, and manage risks along the way.
A: They also keep stakeholders informed so the project finishes on time and within scope.

Q: What is minimalism as a lifestyle?
S: minimalism
A: Minimalism means choosing to own and do less so you can focus on what matters most to you.
A: In practice, that can mean decluttering, buying fewer but better things, and simplifying your schedule.
A: It's not about owning a specific number of items, but about being intentional.

Q: How do I change a flat tire?
S: changing a flat tire
K: howto
A: Park on flat ground, turn on your hazard lights, and apply the parking brake.
A: Loosen the lug nuts slightly while the wheel is still on the ground.
A: Jack up the car, remove the nuts and the flat, and put on the spare.
A: Hand-tighten the nuts, lower the car, then tighten them fully in a star pattern.
W: 2 | Jack the car all the way up first, then loosen the lug nuts while the wheel spins freely.

Q: How do I jump-start a car?
S: jump-starting a car
K: howto
A: Connect one red clamp to the dead battery's positive terminal and the other red clamp to the good battery's positive terminal.
A: Connect a black clamp to the good battery's negative terminal and the last black clamp to bare metal on the dead car, away from the battery.
A: Start the working car, wait a few minutes, then start the dead one and remove the cables in reverse order.
W: 1 | Connect one red clamp to the dead battery's negative terminal and the other red clamp to the good battery's positive terminal.

Q: How do I tie a tie with a simple knot?
S: tying a tie
K: howto
A: Drape the tie around your neck with the wide end about a foot lower than the narrow end.
A: Cross the wide end over the narrow end, then wrap it around behind once.
A: Bring the wide end up through the neck loop from underneath.
A: Push it down through the front loop and tighten by sliding the knot up; this is the four-in-hand knot.

Q: How do I write a good résumé?
S: résumés
A: Keep it to one page if you have less than ten years of experience.
A: Lead each bullet with a strong verb and show results with numbers, like "cut costs by 15%".
A: Tailor it to each job by matching the skills listed in the posting.
A: Use a clean, simple layout and proofread carefully.

Q: How can I make friends in a new city?
S: making friends in a new city
A: Join a recurring activity, like a sports league, choir, or class, so you see the same people regularly.
A: Say yes to invitations, even small ones, especially in the first few months.
A: Take the initiative to suggest a second meetup with people you click with.
A: Be patient; close friendships usually take many hours of time together.

Q: How do I look after a sourdough starter?
S: sourdough starters
A: Feed it regularly with equal weights of flour and water, for example 50 g of each.
A: At room temperature, feed it once or twice a day; in the fridge, once a week is enough.
A: Before each feeding, discard most of the old starter so it doesn't grow out of control.
A: A healthy starter doubles in size within 4 to 8 hours after feeding.
W: 2 | At room temperature, feed it once every two months; it needs very little food.

Q: What are some tips for taking better photos with my phone?
S: phone photography
A: Clean the lens first; smudges are a common cause of blurry photos.
A: Use natural light whenever you can, with the light behind you or to the side.
A: Turn on the grid and use the rule of thirds to place your subject off-center.
A: Tap on your subject to focus, and avoid digital zoom; move closer instead.

Q: How do I ask for a deadline extension at work?
S: asking for an extension
A: Ask as early as possible, not on the day it's due.
A: Explain briefly why you need more time and what you've already finished.
A: Propose a specific new date and, if possible, a partial delivery before then.

Q: How do I grow tomatoes on a balcony?
S: balcony tomatoes
A: Choose a compact variety, like cherry or patio tomatoes, and a pot of at least 20 liters.
A: Put it in the sunniest spot you have; tomatoes need six to eight hours of sun a day.
A: Water deeply when the top of the soil is dry, and support the plant with a stake or cage.
A: Feed it with tomato fertilizer every two weeks once flowers appear.
W: 2 | Put it in a shady corner; tomatoes fruit best with about one hour of sun a day.

Q: How can I make a long-haul flight more comfortable?
S: long flights
A: Wear comfortable layers and compression socks to help circulation.
A: Drink water regularly and limit alcohol.
A: Walk the aisle or do seated leg stretches every hour or two.
A: Bring a neck pillow, earplugs or headphones, and an eye mask.

Q: How can I reduce my electricity bill?
S: saving electricity
A: Switch to LED bulbs, which use about 75% less energy than old incandescent ones.
A: Turn devices off at the wall instead of leaving them on standby.
A: Wash clothes in cold water and run the dishwasher only when it's full.
A: Adjust the thermostat by a degree or two; heating and cooling are usually the biggest costs.
W: 1 | Switch to incandescent bulbs, which use about 75% less energy than LEDs.

Q: What's the best way to study for a math test?
S: studying math
A: Do lots of practice problems; math is learned by doing, not by rereading.
A: Redo problems you got wrong without looking at the solution.
A: Mix different types of problems so you practice choosing the right method.
A: Space your study over several days instead of cramming the night before.

Q: What is a good morning routine?
S: morning routines
A: Wake up at a consistent time and get some daylight soon after.
A: Drink a glass of water and eat a simple breakfast if you're hungry.
A: Move your body for a few minutes, even with a short walk or a stretch.
A: Look at your plan for the day before opening email or social media.

Q: How do I negotiate the price of a car?
S: negotiating a car price
A: Research the car's fair market price beforehand and get quotes from several dealers.
A: Negotiate the total out-the-door price, not the monthly payment.
A: Arrange financing with your bank first so you can compare it with the dealer's offer.
A: Be polite but willing to walk away; that's your strongest leverage.

Q: How do I deal with a noisy upstairs neighbor?
S: noisy neighbors
A: Start with a friendly, face-to-face conversation; they may not realize how much sound travels.
A: Be specific about the times and kind of noise, and suggest simple fixes like rugs.
A: Keep a log if it continues, and then involve your landlord or building management.

Q: How long should I steep green tea?
S: brewing green tea
A: Steep green tea for about 2 to 3 minutes.
A: Use water around 75 to 80°C rather than boiling water, which makes it bitter.
A: Good loose-leaf tea can usually be steeped two or three times.
W: 1 | Steep green tea for about 15 minutes.
W: 2 | Use water at a full rolling boil, which brings out its sweetness.

Q: How do I teach my dog to sit?
S: teaching a dog to sit
K: howto
A: Hold a treat close to your dog's nose, then slowly move it up and back over its head.
A: As its head follows the treat, its bottom will lower to the floor.
A: The moment it sits, say "sit", give the treat, and praise it.
A: Repeat in short sessions a few times a day, then gradually phase out the treat.

Q: What should be in a basic first-aid kit?
S: first-aid kits
A: Adhesive bandages in several sizes, sterile gauze pads, and medical tape.
A: Antiseptic wipes, tweezers, scissors, and disposable gloves.
A: An elastic bandage, a thermometer, and pain relievers like paracetamol or ibuprofen.
A: Keep a list of emergency numbers inside, and check expiry dates once a year.

Q: How do I remove chewing gum from hair?
S: gum in hair
K: howto
A: Rub a little vegetable oil or peanut butter into the gum to loosen it.
A: Gently work the gum down and out with your fingers or a fine-toothed comb.
A: Wash the hair with shampoo afterward to remove the oil.
W: 1 | Pour hot candle wax over the gum so it hardens and peels off with the hair.

Q: What are some good habits for healthy teeth?
S: dental health
A: Brush twice a day for two minutes with a fluoride toothpaste.
A: Clean between your teeth daily with floss or interdental brushes.
A: Limit sugary snacks and drinks, especially between meals.
A: See a dentist for a check-up about once or twice a year.
W: 1 | Brush once a week for about ten seconds; brushing more often wears your teeth away.

Q: How do I make a good first impression at a new job?
S: starting a new job
A: Arrive on time, learn names quickly, and introduce yourself to the people around you.
A: Ask questions and take notes so you don't have to ask the same thing twice.
A: Look for a small early win, and ask your manager how they prefer to communicate.

Q: What is a good way to organize a small closet?
S: closet organization
A: Start by taking everything out and donating clothes you haven't worn in a year.
A: Use slim matching hangers and add a second rod or shelf to use the vertical space.
A: Store out-of-season clothes in bins under the bed or on the top shelf.
A: Keep the items you wear most at eye level.

Q: How do I choose a good book to read?
S: choosing a book
A: Think about books you loved recently and look for similar authors or genres.
A: Read the first few pages in a shop or an online preview to see if the voice grabs you.
A: Ask friends or a librarian for recommendations, and don't feel bad about putting a book down if it's not working.

Q: How does a knight move in chess?
S: the knight in chess
A: A knight moves in an "L" shape: two squares in one direction and then one square at a right angle.
A: It is the only piece that can jump over other pieces.
A: A knight always lands on a square of the opposite color from where it started.
W: 1 | A knight moves in a straight line any number of squares, like a rook.

Q: How many cards are in a standard deck?
S: a deck of cards
A: A standard deck has 52 cards.
A: They are split into four suits (hearts, diamonds, clubs, and spades) of 13 cards each.
A: Many decks also include two jokers, which aren't counted in the 52.
W: 1 | A standard deck has 48 cards.
W: 2 | They are split into four suits (hearts, diamonds, clubs, and spades) of 12 cards each.

Q: What is the offside rule in soccer?
S: the offside rule
A: A player is offside if, when the ball is passed to them, they are in the opponents' half and closer to the goal line than both the ball and the second-last defender.
A: Being level with the second-last defender is onside.
A: You can't be offside directly from a goal kick, throw-in, or corner kick.
W: 3 | You are always offside when receiving a throw-in or corner kick.

Q: How long does it take to walk a mile?
S: walking a mile
A: Most people walk a mile in about 15 to 20 minutes at a comfortable pace.
A: A brisk walker can do it in 12 to 15 minutes.
A: That works out to roughly 3 to 4 miles per hour.
W: 1 | Most people walk a mile in about 2 to 3 minutes at a comfortable pace.

Q: What's the difference between a latte and a cappuccino?
S: lattes and cappuccinos
A: Both are made with espresso and steamed milk.
A: A cappuccino has roughly equal parts espresso, steamed milk, and a thick layer of foam.
A: A latte has more steamed milk and only a thin layer of foam, so it's creamier and milder.
W: 3 | A latte has no milk at all, just espresso with a thick layer of foam on top.

Q: How do I make cold brew coffee?
S: cold brew coffee
K: howto
A: Mix coarsely ground coffee with cold water, about 1 part coffee to 8 parts water.
A: Stir, cover, and leave it in the fridge for 12 to 18 hours.
A: Strain it through a fine sieve or a coffee filter.
A: Serve it over ice, diluted with water or milk to taste.
W: 2 | Stir, cover, and leave it in the fridge for 20 minutes.

Q: What's a good way to remember people's names?
S: remembering names
A: Repeat the name right away: "Nice to meet you, Priya."
A: Link it to an image, or to someone you know with the same name.
A: Use it once more during the conversation and again when you say goodbye.

Q: How do I politely end a conversation that's going on too long?
S: ending a conversation
A: Wait for a natural pause, then sum up: "It's been great hearing about your trip."
A: Give a clear reason to go, like "I need to catch someone before they leave."
A: End warmly, with something like "Let's catch up again soon."

Q: What should I do before a big presentation?
S: preparing a presentation
A: Rehearse out loud at least twice, timing yourself.
A: Know your first minute by heart so you start confidently.
A: Check the room, projector, and slides early, and bring a backup on a USB stick.
A: Get some sleep and breathe slowly before you start.

Q: How can I help the environment in everyday life?
S: helping the environment
A: Walk, cycle, or take public transport for short trips.
A: Reduce food waste by planning meals, and eat more plant-based meals.
A: Use reusable bags, bottles, and cups, and repair things before replacing them.
A: Save energy at home by turning things off and lowering the heating a little.

Q: Why do cats purr?
S: cats purring
A: Cats purr by rapidly twitching the muscles of their larynx as they breathe in and out.
A: They often purr when content, but also when stressed or hurt, so it can be a self-soothing signal.
A: Mother cats and kittens also use purring to communicate.
W: 1 | Cats purr by vibrating a special bone in their tail.

Q: How long do dogs usually live?
S: dog lifespans
A: Most dogs live about 10 to 13 years.
A: Smaller breeds tend to live longer, often 14 years or more.
A: Large and giant breeds, like Great Danes, often live only 7 to 10 years.
W: 2 | Smaller breeds tend to live much shorter lives, usually about 4 years.

Q: What are the primary colors?
S: primary colors
A: In traditional painting, the primary colors are red, yellow, and blue.
A: For light, as on screens, the primaries are red, green, and blue.
A: Mixing primaries produces the other colors; in paint, yellow and blue make green.
W: 3 | Mixing primaries produces the other colors; in paint, red and blue make green.

Q: Who composed the "Moonlight Sonata"?
S: the Moonlight Sonata
A: The "Moonlight Sonata" was composed by Ludwig van Beethoven.
A: It is his Piano Sonata No. 14, completed in 1801.
A: The nickname came later, from a critic who compared the first movement to moonlight on a lake.
W: 1 | The "Moonlight Sonata" was composed by Wolfgang Amadeus Mozart.

Q: What is the difference between a democracy and a republic?
S: democracy and republic
A: A democracy is any system where the people hold power, either directly or through elected representatives.
A: A republic is a state with no monarch, where the head of state is elected or appointed.
A: The terms overlap: many countries, like France, are both, while the UK is a democracy but not a republic.

Q: What is the best way to learn to type faster?
S: typing speed
A: Learn proper touch typing, with your fingers resting on the home row, and stop looking at the keyboard.
A: Practice for 15 to 20 minutes a day on a typing tutor site.
A: Focus on accuracy first; speed follows once your fingers learn the positions.

Q: How do I make a paper airplane that flies far?
S: paper airplanes
K: howto
A: Fold a sheet of printer paper in half lengthwise, then unfold it.
A: Fold the top corners to the center crease, then fold the new slanted edges to the center again.
A: Fold the plane in half along the crease and fold each wing down, level with the bottom.
A: Throw it gently and level; a hard throw makes it stall.

Q: How do I keep bread fresh longer?
S: keeping bread fresh
A: Store it at room temperature in a bread box or paper bag for a day or two.
A: Don't refrigerate it; the cold makes bread go stale faster.
A: For longer storage, slice it and freeze it, then toast the slices straight from the freezer.
W: 2 | Keep it in the fridge, since cold air stops bread from going stale.

Q: How can I become a better writer?
S: improving your writing
A: Read widely and notice how good writers structure their sentences.
A: Write regularly, even short pieces, and finish them.
A: Revise ruthlessly: cut unnecessary words and read your work aloud.
A: Ask for feedback from readers you trust.

Q: What are the signs of dehydration?
S: dehydration
A: Common signs are thirst, dark yellow urine, and urinating less often.
A: You may also feel tired or dizzy, or get a headache.
A: Severe dehydration can cause confusion and a rapid heartbeat and needs urgent care.
W: 1 | Common signs are pale, clear urine and urinating more often than usual.

Q: What is a good stretch for a stiff lower back?
S: lower back stretches
A: Try the knee-to-chest stretch: lie on your back and gently pull one knee toward your chest for 20 to 30 seconds, then switch.
A: The cat-cow stretch on your hands and knees also loosens the spine.
A: Move slowly, stop if you feel sharp pain, and see a doctor if the stiffness persists.

Q: How should I prepare for a thunderstorm?
S: thunderstorm safety
A: Bring in or tie down outdoor furniture and anything the wind could throw.
A: Charge your phone and keep a flashlight ready in case the power goes out.
A: Stay indoors and away from windows; if you're outside, avoid open fields, hilltops, and lone trees.
W: 3 | If you're outside, shelter under the tallest lone tree you can find, since it draws lightning away from you.

Q: What's the difference between "its" and "it's"?
S: its and it's
A: "It's" is a contraction of "it is" or "it has": it's raining.
A: "Its" is the possessive form: the dog wagged its tail.
A: If you can replace the word with "it is", use the apostrophe.
W: 1 | "Its" is a contraction of "it is" or "it has": its raining.
W: 2 | "It's" is the possessive form: the dog wagged it's tail.

Q: What does "RSVP" mean?
S: RSVP
A: RSVP stands for the French phrase "répondez s'il vous plaît", meaning "please reply".
A: On an invitation, it asks you to tell the host whether you will attend.
A: Reply by the date given, whether your answer is yes or no.
W: 1 | RSVP stands for "Reply Soon, Very Polite", an English phrase from the 1950s.

Q: What's the best way to clean hardwood floors?
S: cleaning hardwood floors
A: Sweep or vacuum with a soft-brush attachment to remove grit, which scratches the finish.
A: Mop with a barely damp mop and a cleaner made for wood floors.
A: Wipe up spills immediately, and never let standing water sit on the wood.
W: 2 | Mop with a soaking wet mop and plenty of bleach, and leave the water to soak in.

Q: How do I become a morning person?
S: becoming a morning person
A: Shift your bedtime and wake time earlier by 15 minutes every few days.
A: Get bright light soon after waking and dim the lights in the evening.
A: Keep the same wake time on weekends, and put your alarm across the room.

Q: What is a good way to start meditating?
S: meditation
A: Start with just five minutes a day, sitting comfortably with your eyes closed or lowered.
A: Focus on your breath, and when your mind wanders, gently bring it back without judging yourself.
A: A guided app or recording can help at first; consistency matters more than length.

Q: How do I write a strong thesis statement for an essay?
S: thesis statements
A: Make a specific, arguable claim, not a statement of fact or a topic.
A: Keep it to one or two sentences, usually at the end of the introduction.
A: Preview the main reasons you'll use to support it, so the reader knows where the essay is going.

Q: What's a good way to pay off credit card debt?
S: paying off debt
A: List all your cards with their balances and interest rates.
A: Pay the minimum on every card, then put any extra money toward the card with the highest interest rate.
A: Once that's paid off, roll the payment into the next one, and avoid adding new charges.
W: 2 | Pay only the minimum on every card, since extra payments don't reduce the interest you owe.

Q: How do I keep cut flowers fresh longer?
S: cut flowers
A: Trim the stems at an angle under water and remove any leaves that would sit below the waterline.
A: Use a clean vase, change the water every two days, and add the flower food packet.
A: Keep the vase out of direct sun and away from ripening fruit, which releases ethylene gas.
W: 3 | Keep the vase in direct sun next to a bowl of ripe fruit, which helps the flowers open.
"""

STEM_TOPICS = r"""
Q: Why is the sky blue?
S: the color of the sky
A: Sunlight contains all colors, and as it passes through the atmosphere it scatters off gas molecules.
A: Blue light has a shorter wavelength than red, so it scatters much more strongly; this is called Rayleigh scattering.
A: That scattered blue light reaches our eyes from every direction in the sky.
W: 2 | Blue light has a longer wavelength than red, so it scatters much less and builds up overhead; this is called Rayleigh scattering.

Q: What is photosynthesis?
S: photosynthesis
A: Photosynthesis is the process plants, algae, and some bacteria use to make food from light.
A: They take in carbon dioxide and water and, using energy from sunlight, turn them into glucose.
A: Oxygen is released as a by-product, which is where most of the oxygen we breathe comes from.
W: 2 | They take in oxygen and glucose and, using energy from sunlight, turn them into carbon dioxide.
W: 3 | Carbon dioxide is released as a by-product.

Q: What is the chemical formula for water?
S: water's chemical formula
A: The chemical formula for water is H2O.
A: Each molecule has two hydrogen atoms bonded to one oxygen atom.
A: The bent shape of the molecule makes water polar, which is why it dissolves so many substances.
W: 1 | The chemical formula for water is HO2.
W: 2 | Each molecule has one hydrogen atom bonded to two oxygen atoms.

Q: What is the speed of light?
S: the speed of light
A: The speed of light in a vacuum is about 299,792 kilometers per second, often rounded to 300,000 km/s.
A: Light from the Sun takes about 8 minutes and 20 seconds to reach Earth.
A: Nothing with mass can travel as fast as light.
W: 1 | The speed of light in a vacuum is about 3,000 kilometers per second.
W: 2 | Light from the Sun takes about 14 hours to reach Earth.

Q: What are the three states of matter?
S: states of matter
A: The three common states of matter are solid, liquid, and gas.
A: Solids keep their shape, liquids take the shape of their container, and gases spread out to fill it.
A: A fourth state, plasma, exists at very high temperatures, as in stars and lightning.
W: 2 | Solids take the shape of their container, liquids keep a fixed shape, and gases stay in one place.

Q: What does DNA stand for, and what does it do?
S: DNA
A: DNA stands for deoxyribonucleic acid.
A: It carries the genetic instructions that living things use to grow, function, and reproduce.
A: Its code is written in four bases: adenine, thymine, guanine, and cytosine.
W: 1 | DNA stands for dinitrogen acid.
W: 3 | Its code is written in just two bases: adenine and uracil.

Q: What's the difference between a virus and a bacterium?
S: viruses and bacteria
A: Bacteria are single-celled living organisms that can reproduce on their own.
A: Viruses are much smaller and can only reproduce inside the cells of a host.
A: Antibiotics can treat many bacterial infections but don't work against viruses.
W: 3 | Antibiotics work well against viruses but have no effect on bacteria.

Q: What do red blood cells do?
S: red blood cells
A: Red blood cells carry oxygen from the lungs to the rest of the body.
A: They contain hemoglobin, an iron-rich protein that binds oxygen and gives blood its red color.
A: They also carry some carbon dioxide back to the lungs to be breathed out.
W: 1 | Red blood cells fight infections by attacking bacteria and viruses.

Q: How many bones are in the adult human body?
S: the human skeleton
A: An adult human skeleton has 206 bones.
A: Babies are born with around 270, and some fuse together as they grow.
A: The smallest bone is the stapes, in the middle ear.
W: 1 | An adult human skeleton has 412 bones.

Q: What is Newton's first law of motion?
S: Newton's first law
A: Newton's first law says an object stays at rest, or keeps moving at a constant speed in a straight line, unless a net force acts on it.
A: This tendency to resist changes in motion is called inertia.
A: It's why passengers lurch forward when a bus brakes suddenly.
W: 1 | Newton's first law says every moving object naturally slows down and stops, even when no force acts on it.

Q: At what temperature does water boil?
S: the boiling point of water
A: At sea level, pure water boils at 100°C (212°F).
A: At higher altitudes the air pressure is lower, so water boils at a lower temperature.
A: In Denver, for example, it boils at about 95°C.
W: 1 | At sea level, pure water boils at 80°C (176°F).
W: 2 | At higher altitudes the air pressure is lower, so water boils at a higher temperature.

Q: What is the pH of pure water?
S: pH
A: Pure water at 25°C has a pH of 7, which is neutral.
A: Values below 7 are acidic, like lemon juice, and values above 7 are basic, like soapy water.
A: The scale is logarithmic, so pH 5 is ten times more acidic than pH 6.
W: 1 | Pure water at 25°C has a pH of 0, which is neutral.
W: 3 | The scale is linear, so pH 5 is only slightly more acidic than pH 6.

Q: Why do we have seasons?
S: the seasons
A: Seasons happen because Earth's axis is tilted about 23.5 degrees relative to its orbit.
A: As Earth orbits, each hemisphere takes turns leaning toward the Sun, getting more direct light and longer days.
A: It's not about distance: Earth is actually closest to the Sun in early January.
W: 1 | Seasons happen because Earth moves much closer to the Sun in summer and much farther away in winter.
W: 3 | That's why Earth is closest to the Sun in July.

Q: How strong is gravity on the Moon compared to Earth?
S: gravity on the Moon
A: Gravity on the Moon is about one-sixth of Earth's: around 1.62 m/s² versus 9.8 m/s².
A: A person whose bathroom scale reads 60 kg on Earth would see about 10 kg on the Moon.
A: Their mass stays the same; only the pull of gravity changes.
W: 1 | Gravity on the Moon is about twice Earth's: around 19.6 m/s² versus 9.8 m/s².
W: 2 | A person whose bathroom scale reads 60 kg on Earth would see about 120 kg on the Moon.

Q: What are the noble gases?
S: noble gases
A: The noble gases are helium, neon, argon, krypton, xenon, and radon, in group 18 of the periodic table.
A: They have full outer electron shells, so they rarely react with other elements.
A: That's why argon is used inside light bulbs and helium in balloons.
W: 1 | The noble gases are hydrogen, oxygen, nitrogen, and chlorine, in group 1 of the periodic table.

Q: What is the largest planet in our solar system?
S: the largest planet
A: Jupiter is the largest planet in our solar system.
A: It is a gas giant with a diameter about 11 times Earth's.
A: Its Great Red Spot is a storm larger than Earth that has lasted for centuries.
W: 1 | Saturn is the largest planet in our solar system.

Q: Which planet is known as the Red Planet, and why?
S: Mars
A: Mars is known as the Red Planet.
A: Its surface is covered in iron oxide, essentially rust, which gives it a reddish color.
A: It also has the tallest volcano in the solar system, Olympus Mons.
W: 1 | Venus is known as the Red Planet.
W: 2 | Its surface is covered in red copper, which gives it a reddish color.

Q: What is an atom made of?
S: atoms
A: An atom has a tiny, dense nucleus made of protons and neutrons.
A: Electrons, which carry a negative charge, move around the nucleus.
A: The number of protons determines which element the atom is.
W: 3 | The number of neutrons determines which element the atom is.

Q: What is the difference between mass and weight?
S: mass and weight
A: Mass is the amount of matter in an object, measured in kilograms.
A: Weight is the force of gravity on that mass, measured in newtons.
A: Your mass is the same everywhere, but your weight would be smaller on the Moon.
W: 3 | Your weight is the same everywhere, but your mass would be smaller on the Moon.

Q: Which part of the cell is called the powerhouse, and why?
S: mitochondria
A: The mitochondrion is often called the powerhouse of the cell.
A: It produces most of the cell's ATP, the molecule cells use for energy, through cellular respiration.
A: Mitochondria even have their own small set of DNA, inherited from the mother.
W: 1 | The nucleus is often called the powerhouse of the cell.
W: 2 | It produces most of the cell's glucose through photosynthesis.

Q: How does a rainbow form?
S: rainbows
A: A rainbow forms when sunlight enters raindrops, bends, reflects off the back of each drop, and bends again as it leaves.
A: Each color bends by a slightly different amount, so white light splits into a spectrum.
A: You see one when the Sun is behind you and the rain is in front of you.
W: 3 | You see one when you look directly toward the Sun through the rain.

Q: What is the freezing point of water in Fahrenheit?
S: the freezing point of water
A: Water freezes at 32°F, which is 0°C.
A: Adding salt lowers the freezing point, which is why roads are salted in winter.
W: 1 | Water freezes at 0°F, which is the same as 0°C.
W: 2 | Adding salt raises the freezing point, which is why roads are salted in winter.

Q: What is an element's atomic number?
S: atomic numbers
A: An element's atomic number is the number of protons in the nucleus of each of its atoms.
A: It defines the element: carbon always has 6 protons, and oxygen always has 8.
A: The periodic table is arranged in order of increasing atomic number.
W: 2 | It defines the element: carbon always has 12 protons, and oxygen always has 16.

Q: What causes ocean tides?
S: tides
A: Tides are caused mainly by the Moon's gravity pulling on Earth's oceans.
A: The water bulges on the side facing the Moon and on the opposite side, so most coasts get two high tides a day.
A: The Sun contributes too: when the Sun and Moon line up, we get larger spring tides.
W: 1 | Tides are caused mainly by wind pushing the oceans back and forth.

Q: What is the difference between an acid and a base?
S: acids and bases
A: Acids release hydrogen ions in water and have a pH below 7, like vinegar.
A: Bases accept hydrogen ions or release hydroxide ions and have a pH above 7, like baking soda.
A: When an acid and a base react, they neutralize each other and form water and a salt.
W: 1 | Acids have a pH above 7, like baking soda.
W: 2 | Bases have a pH below 7, like vinegar.

Q: What is kinetic energy?
S: kinetic energy
A: Kinetic energy is the energy an object has because it is moving.
A: It equals one half times mass times speed squared: KE = ½mv².
A: Because speed is squared, doubling the speed quadruples the kinetic energy.
W: 2 | It equals mass times speed: KE = mv.
W: 3 | So doubling the speed simply doubles the kinetic energy.

Q: How many chromosomes do humans have?
S: human chromosomes
A: Humans usually have 46 chromosomes, arranged in 23 pairs.
A: One set of 23 comes from each parent.
A: The 23rd pair are the sex chromosomes, usually XX or XY.
W: 1 | Humans usually have 64 chromosomes, arranged in 32 pairs.
W: 2 | One set of 32 comes from each parent.
W: 3 | The 32nd pair are the sex chromosomes, usually XX or XY.

Q: What is the difference between a meteor and a meteorite?
S: meteors and meteorites
A: A meteoroid is a small rock traveling through space.
A: A meteor is the streak of light you see when one burns up in Earth's atmosphere, often called a shooting star.
A: A meteorite is a piece that survives the fall and lands on the ground.
W: 3 | A meteorite is one that burns up completely long before it gets close to the ground.

Q: What does a catalyst do in a chemical reaction?
S: catalysts
A: A catalyst speeds up a chemical reaction without being used up.
A: It works by lowering the activation energy, the energy needed for the reaction to start.
A: Enzymes are biological catalysts, and cars use catalytic converters to clean their exhaust.
W: 1 | A catalyst slows down a chemical reaction and is completely used up by it.

Q: What is the law of conservation of energy?
S: conservation of energy
A: The law says energy can't be created or destroyed, only changed from one form to another.
A: For example, a falling ball turns gravitational potential energy into kinetic energy.
A: The total energy of a closed system stays constant.
W: 1 | The law says energy is created whenever something moves and destroyed when it stops.

Q: What is the Pythagorean theorem?
S: the Pythagorean theorem
A: In a right triangle, the square of the hypotenuse equals the sum of the squares of the other two sides: a² + b² = c².
A: For example, a right triangle with legs 3 and 4 has a hypotenuse of 5, since 9 + 16 = 25.
A: It only applies to right triangles.
W: 2 | For example, a right triangle with legs 3 and 4 has a hypotenuse of 7, since 3 + 4 = 7.

Q: What is a prime number?
S: prime numbers
A: A prime number is a whole number greater than 1 whose only divisors are 1 and itself.
A: The first few primes are 2, 3, 5, 7, 11, and 13.
A: 2 is the only even prime, and 1 is not considered prime.
W: 2 | The first few primes are 1, 3, 5, 7, 9, and 11.
W: 3 | 2 is not prime because it is even, but 1 and 9 are.

Q: How far away is the Moon?
S: the distance to the Moon
A: The Moon is on average about 384,400 km from Earth.
A: The distance varies between roughly 363,000 and 405,000 km because its orbit is an ellipse.
A: Light covers that distance in about 1.3 seconds.
W: 1 | The Moon is on average about 38,400 km from Earth.
W: 3 | Light covers that distance in about 13 minutes.

Q: What is the difference between speed and velocity?
S: speed and velocity
A: Speed is how fast something moves, for example 50 km/h.
A: Velocity is speed with a direction, for example 50 km/h north.
A: A car driving around a circular track at a steady speed has a changing velocity, because its direction keeps changing.
W: 3 | A car driving around a circular track at a steady speed has a constant velocity, because direction doesn't count.

Q: What is an ecosystem?
S: ecosystems
A: An ecosystem is a community of living things interacting with each other and with their physical environment.
A: It includes producers like plants, consumers like animals, and decomposers like fungi and bacteria.
A: Energy flows through it from the Sun, while nutrients are recycled.

Q: What is the greenhouse effect?
S: the greenhouse effect
A: The greenhouse effect is how certain gases in the atmosphere, like carbon dioxide, methane, and water vapor, trap heat.
A: Sunlight warms Earth's surface, and these gases absorb some of the heat it radiates back, keeping the planet warmer.
A: Without it Earth would be about 33°C colder, but extra greenhouse gases from burning fossil fuels are now causing global warming.
W: 1 | The greenhouse effect is how oxygen and nitrogen, the main gases in the air, trap heat.

Q: How do vaccines work?
S: vaccines
A: Vaccines train your immune system to recognize a germ without you having to get sick from it.
A: They contain a harmless piece or weakened form of the germ, or instructions for making one of its proteins.
A: Your body makes antibodies and memory cells, so it can respond quickly if you meet the real germ.

Q: What is absolute zero?
S: absolute zero
A: Absolute zero is the lowest possible temperature: 0 kelvin, or −273.15°C.
A: At that point, particles have the minimum possible energy.
A: It can be approached in laboratories but never actually reached.
W: 1 | Absolute zero is the lowest possible temperature: 0 kelvin, or −100°C.

Q: What is the difference between herbivores, carnivores, and omnivores?
S: animal diets
A: Herbivores eat only plants, like cows and rabbits.
A: Carnivores eat mainly other animals, like lions and sharks.
A: Omnivores eat both plants and animals, like bears, pigs, and humans.
W: 1 | Herbivores eat only meat, like cows and rabbits.

Q: What is density?
S: density
A: Density is how much mass is packed into a given volume: density equals mass divided by volume.
A: Water has a density of about 1 gram per cubic centimeter.
A: Objects less dense than water, like wood, float; denser ones, like iron, sink.
W: 2 | Water has a density of about 10 grams per cubic centimeter.

Q: What are the main layers of the Earth?
S: Earth's layers
A: Earth has four main layers: the crust, the mantle, the outer core, and the inner core.
A: The crust is thin and rocky; the mantle is hot rock that flows very slowly.
A: The outer core is liquid iron and nickel, and the inner core is solid, despite being extremely hot.
W: 3 | The outer core is solid granite, and the inner core is liquid water under pressure.

Q: How does a refrigerator keep food cold?
S: refrigerators
A: A refrigerator pumps heat out of the inside using a refrigerant that circulates in a closed loop.
A: The refrigerant evaporates in coils inside, absorbing heat, then is compressed and releases that heat through coils at the back.
A: That's why the back or bottom of a fridge feels warm.
W: 1 | A refrigerator works by blowing cold air made from blocks of ice stored inside its walls.

Q: What is evolution by natural selection?
S: natural selection
A: Natural selection is the process by which living things with traits that help them survive and reproduce leave more offspring.
A: Over many generations, those helpful traits become more common in the population.
A: Charles Darwin described it in "On the Origin of Species" in 1859.
W: 3 | Isaac Newton described it in "On the Origin of Species" in 1687.

Q: Why does ice float on water?
S: floating ice
A: Ice floats because it is less dense than liquid water.
A: When water freezes, its molecules lock into an open hexagonal structure held by hydrogen bonds, which takes up more space.
A: Ice is about 9% less dense, which is why roughly 90% of an iceberg sits below the surface.
W: 1 | Ice floats because it is denser than liquid water.

Q: What is electric current?
S: electric current
A: Electric current is the flow of electric charge, usually electrons moving through a wire.
A: It is measured in amperes, or amps.
A: Voltage pushes the current and resistance limits it, as described by Ohm's law: V = IR.
W: 2 | It is measured in watts.

Q: What does the heart do, and how is it structured?
S: the heart
A: The heart is a muscular pump that pushes blood around the body.
A: It has four chambers: two atria that receive blood and two ventricles that pump it out.
A: The right side sends blood to the lungs for oxygen, and the left side pumps oxygen-rich blood to the rest of the body.
W: 2 | It has two chambers: one atrium and one ventricle.

Q: How many planets are in our solar system?
S: the planets
A: There are eight planets in our solar system.
A: In order from the Sun: Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus, and Neptune.
A: Pluto was reclassified as a dwarf planet in 2006.
W: 1 | There are twelve planets in our solar system.
W: 3 | Pluto was reclassified as a dwarf planet in 1930.

Q: What is the difference between mitosis and meiosis?
S: mitosis and meiosis
A: Mitosis makes two identical cells, each with the full set of chromosomes; it's used for growth and repair.
A: Meiosis makes four cells with half the chromosomes, and it produces eggs and sperm.
A: Meiosis also shuffles genes, which creates genetic variety.
W: 2 | Meiosis makes two cells with double the chromosomes, and it produces skin cells.

Q: What is sound, and how fast does it travel?
S: sound
A: Sound is a vibration that travels as a pressure wave through a medium like air, water, or solids.
A: In air at room temperature it travels at about 343 meters per second.
A: It moves faster in water and even faster in steel, and it can't travel through a vacuum.
W: 2 | In air at room temperature it travels at about 3,430 kilometers per second.
W: 3 | It moves slower in water and steel, and it travels best through a vacuum.

Q: What is the half-life of a radioactive substance?
S: half-life
A: A half-life is the time it takes for half of the radioactive atoms in a sample to decay.
A: After two half-lives, a quarter remains; after three, an eighth.
A: Carbon-14 has a half-life of about 5,730 years, which is used to date ancient organic remains.
W: 2 | After two half-lives, nothing remains at all.

Q: What is the difference between renewable and nonrenewable energy?
S: renewable energy
A: Renewable energy comes from sources that naturally replenish, like sunlight, wind, and flowing water.
A: Nonrenewable energy comes from finite sources, like coal, oil, natural gas, and uranium.
A: Burning fossil fuels also releases carbon dioxide, while most renewables produce little while operating.
W: 2 | Nonrenewable energy comes from sources like wind and sunlight, which will soon run out.

Q: How do magnets work?
S: magnets
A: Magnets produce a magnetic field because the spins of many of their electrons line up in the same direction.
A: Every magnet has a north and a south pole; opposite poles attract and like poles repel.
A: Only some materials, like iron, nickel, and cobalt, are strongly attracted to magnets.
W: 2 | Every magnet has a north and a south pole; like poles attract and opposite poles repel.

Q: What is an ion?
S: ions
A: An ion is an atom or molecule with an electric charge because it has gained or lost electrons.
A: Losing electrons makes a positive ion, or cation, such as Na+.
A: Gaining electrons makes a negative ion, or anion, such as Cl−.
W: 2 | Losing electrons makes a negative ion, such as Na−.

Q: What is the difference between a series and a parallel circuit?
S: series and parallel circuits
A: In a series circuit, components are connected one after another, so the same current flows through all of them.
A: In a parallel circuit, each component has its own branch, so each gets the full voltage.
A: That's why one dead bulb breaks a series string, but the other bulbs stay lit in a parallel circuit.
W: 3 | That's why one dead bulb breaks a parallel circuit, but the other bulbs stay lit in a series string.

Q: What are the main parts of a plant cell that animal cells don't have?
S: plant cells
A: Plant cells have a rigid cell wall made of cellulose outside the membrane.
A: They have chloroplasts, where photosynthesis happens.
A: They usually have a large central vacuole that stores water and keeps the cell firm.
W: 1 | Plant cells have no cell membrane, only a soft wall made of protein.
"""

# --------------------------------------------------------------------------------------------
# Code rows: a question, a correct answer, and a polished-looking answer with a real bug.
# `err` describes the bug for the annotator reasoning; `sev` is the preference strength of the
# buggy pair. Items marked split="validation" are held out.
# --------------------------------------------------------------------------------------------

CODE_ITEMS = [
    dict(
        lang="python",
        q="Write a Python function that checks whether a string is a palindrome, ignoring case.",
        good='Here\'s a simple version:\n\n```python\ndef is_palindrome(s: str) -> bool:\n    s = s.lower()\n    return s == s[::-1]\n```\n\n`s.lower()` makes the check case-insensitive, and `s[::-1]` reverses the string, so `is_palindrome("Level")` returns `True`.',
        bad='Here\'s a simple version:\n\n```python\ndef is_palindrome(s):\n    return s == s[::-1]\n```\n\n`s[::-1]` reverses the string, so `is_palindrome("Level")` returns `True`.',
        err='it never lower-cases the string, so "Level" returns False even though the explanation claims otherwise',
        sev=2,
    ),
    dict(
        lang="python",
        q="How do I read a text file line by line in Python?",
        good='Use a `with` block and iterate over the file object:\n\n```python\nwith open("data.txt", encoding="utf-8") as f:\n    for line in f:\n        print(line.rstrip("\\n"))\n```\n\nThe `with` block closes the file automatically, and iterating over `f` reads one line at a time without loading the whole file into memory.',
        bad='You can read it like this:\n\n```python\nf = open("data.txt")\ntext = f.read()\nfor line in text:\n    print(line)\n```\n\nThis prints the file one line at a time.',
        err="looping over the string returned by read() yields single characters, so it prints one character per line, and the file is never closed",
        sev=2,
    ),
    dict(
        lang="python",
        q="How can I remove duplicates from a list in Python but keep the original order?",
        good="Use `dict.fromkeys`, which keeps the first occurrence of each item in order:\n\n```python\nitems = [3, 1, 3, 2, 1]\nunique = list(dict.fromkeys(items))\nprint(unique)  # [3, 1, 2]\n```\n\nDictionaries preserve insertion order (Python 3.7+), so this is both short and fast.",
        bad="Convert the list to a set and back:\n\n```python\nitems = [3, 1, 3, 2, 1]\nunique = list(set(items))\nprint(unique)  # [3, 1, 2]\n```\n\nSets keep the original order, so this is the simplest way.",
        err="sets do not preserve insertion order, so the claimed order is not guaranteed",
        sev=2,
    ),
    dict(
        lang="python",
        q="Write a Python function to compute the factorial of n.",
        good="An iterative version avoids recursion limits:\n\n```python\ndef factorial(n: int) -> int:\n    if n < 0:\n        raise ValueError(\"n must be non-negative\")\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result\n```\n\n`factorial(0)` returns 1, and `factorial(5)` returns 120.",
        bad="Here's a clean recursive version:\n\n```python\ndef factorial(n):\n    return n * factorial(n - 1)\n```\n\n`factorial(5)` returns 120.",
        err="the recursion has no base case, so every call ends in a RecursionError",
        sev=3,
    ),
    dict(
        lang="python",
        q="How do I sort a list of dictionaries by the 'age' key in Python?",
        good='Pass a `key` function to `sorted`:\n\n```python\npeople = [{"name": "Ana", "age": 31}, {"name": "Ben", "age": 25}]\nby_age = sorted(people, key=lambda p: p["age"])\n```\n\nAdd `reverse=True` for oldest first, or use `people.sort(key=...)` to sort the list in place.',
        bad='Call `sort` with the key name:\n\n```python\npeople = [{"name": "Ana", "age": 31}, {"name": "Ben", "age": 25}]\npeople.sort(people["age"])\n```\n\nThis sorts the list by age in place.',
        err='people["age"] indexes a list with a string, which raises a TypeError; sort needs key=lambda p: p["age"]',
        sev=3,
    ),
    dict(
        lang="python",
        q="What's the difference between a list and a tuple in Python?",
        good="Lists are mutable: you can append, remove, or change items. Tuples are immutable once created.\n\n```python\nnums = [1, 2]\nnums.append(3)   # fine\npoint = (1, 2)\n# point[0] = 5   # TypeError\n```\n\nBecause tuples are immutable (and hashable when their items are), they can be dictionary keys. Use a list for collections that change and a tuple for fixed records.",
        bad="Tuples are mutable and lists are immutable.\n\n```python\npoint = (1, 2)\npoint[0] = 5     # fine\nnums = [1, 2]\n# nums.append(3) # error\n```\n\nUse tuples when the data changes often and lists for fixed data.",
        err="it swaps the two: lists are the mutable type, and assigning to a tuple item raises a TypeError",
        sev=3,
    ),
    dict(
        lang="python",
        q="How do I count how many times each word appears in a string in Python?",
        good='`collections.Counter` does this directly:\n\n```python\nfrom collections import Counter\n\ntext = "the cat and the hat"\ncounts = Counter(text.lower().split())\nprint(counts["the"])        # 2\nprint(counts.most_common(2))\n```\n\n`split()` breaks the text on whitespace, and `lower()` makes "The" and "the" count as the same word.',
        bad='Use a dictionary and a loop:\n\n```python\ntext = "the cat and the hat"\ncounts = {}\nfor word in text.split():\n    counts[word] += 1\nprint(counts["the"])  # 2\n```',
        err="counts[word] += 1 raises a KeyError the first time each word is seen; it needs counts.get(word, 0) + 1 or a Counter",
        sev=2,
    ),
    dict(
        lang="python",
        q="How do I get today's date in Python formatted as YYYY-MM-DD?",
        good='Use the `datetime` module:\n\n```python\nfrom datetime import date\n\nprint(date.today().isoformat())         # e.g. 2024-03-15\nprint(date.today().strftime("%Y-%m-%d"))  # same result\n```\n\n`isoformat()` already returns the YYYY-MM-DD form.',
        bad='Use `strftime` with the right codes:\n\n```python\nfrom datetime import datetime\n\nprint(datetime.now().strftime("%Y-%M-%D"))\n```\n\nThis prints something like 2024-03-15.',
        err="%M is minutes and %D is a full month/day/year date, so the output is not YYYY-MM-DD; it should be %Y-%m-%d",
        sev=2,
    ),
    dict(
        lang="python",
        q="Write a Python function that returns the largest number in a list without using max().",
        good='Start from the first element, not from zero:\n\n```python\ndef largest(nums):\n    if not nums:\n        raise ValueError("empty list")\n    best = nums[0]\n    for n in nums[1:]:\n        if n > best:\n            best = n\n    return best\n```\n\nThis also works for lists of negative numbers, such as `[-5, -2, -9]`.',
        bad="Loop and keep the biggest value seen so far:\n\n```python\ndef largest(nums):\n    best = 0\n    for n in nums:\n        if n > best:\n            best = n\n    return best\n```\n\nThis works for any list of numbers.",
        err="starting from 0 returns 0 for lists where every number is negative, such as [-5, -2, -9]",
        sev=1,
        split="validation",
    ),
    dict(
        lang="python",
        q="How do I merge two dictionaries in Python?",
        good="In Python 3.9+ use the `|` operator; in older versions unpack both:\n\n```python\na = {\"x\": 1, \"y\": 2}\nb = {\"y\": 3, \"z\": 4}\nmerged = a | b          # Python 3.9+\nmerged = {**a, **b}     # any Python 3.5+\nprint(merged)  # {'x': 1, 'y': 3, 'z': 4}\n```\n\nWhen a key is in both, the value from `b` wins.",
        bad='Just add them together:\n\n```python\na = {"x": 1, "y": 2}\nb = {"y": 3, "z": 4}\nmerged = a + b\n```\n\nKeys from both dictionaries end up in `merged`.',
        err="dictionaries do not support +, so a + b raises a TypeError",
        sev=3,
        split="validation",
    ),
    dict(
        lang="sql",
        q="Write a SQL query to get the 5 highest-paid employees from an employees table.",
        good="Sort by salary in descending order and limit the result:\n\n```sql\nSELECT name, salary\nFROM employees\nORDER BY salary DESC\nLIMIT 5;\n```\n\nIn SQL Server, use `SELECT TOP 5 name, salary ... ORDER BY salary DESC` instead of `LIMIT`.",
        bad="Order by salary and take the first five rows:\n\n```sql\nSELECT name, salary\nFROM employees\nORDER BY salary\nLIMIT 5;\n```\n\nThis returns the five highest salaries.",
        err="ORDER BY salary sorts ascending, so it returns the five lowest-paid employees",
        sev=2,
    ),
    dict(
        lang="sql",
        q="How do I count the number of orders per customer in SQL?",
        good="Group by the customer and count the rows in each group:\n\n```sql\nSELECT customer_id, COUNT(*) AS order_count\nFROM orders\nGROUP BY customer_id\nORDER BY order_count DESC;\n```\n\nThe `ORDER BY` is optional; it lists your most frequent customers first.",
        bad="Use COUNT on the orders table:\n\n```sql\nSELECT customer_id, COUNT(*) AS order_count\nFROM orders;\n```\n\nThis gives one row per customer with their number of orders.",
        err="without GROUP BY it fails in most databases, or returns a single total row, not one row per customer",
        sev=2,
    ),
    dict(
        lang="sql",
        q="How do I find customers who have never placed an order? Tables: customers(id, name), orders(id, customer_id).",
        good="Use a LEFT JOIN and keep the rows with no match:\n\n```sql\nSELECT c.id, c.name\nFROM customers c\nLEFT JOIN orders o ON o.customer_id = c.id\nWHERE o.id IS NULL;\n```\n\nA `NOT EXISTS` subquery gives the same result and is often just as fast.",
        bad="Join the two tables and look for missing orders:\n\n```sql\nSELECT c.id, c.name\nFROM customers c\nJOIN orders o ON o.customer_id = c.id\nWHERE o.id IS NULL;\n```\n\nThis lists every customer without an order.",
        err="an inner JOIN only keeps customers that have orders, so the WHERE o.id IS NULL filter always returns no rows",
        sev=2,
    ),
    dict(
        lang="sql",
        q="What's the difference between WHERE and HAVING in SQL?",
        good="`WHERE` filters individual rows before grouping; `HAVING` filters groups after aggregation.\n\n```sql\nSELECT department, AVG(salary) AS avg_salary\nFROM employees\nWHERE active = 1\nGROUP BY department\nHAVING AVG(salary) > 60000;\n```\n\nHere `WHERE` drops inactive employees first, and `HAVING` keeps only departments with a high average.",
        bad="There is no real difference: `WHERE` and `HAVING` both filter rows, and you can use either one with or without `GROUP BY`. Most people use `HAVING` for simple filters because it runs first.\n\n```sql\nSELECT * FROM employees HAVING salary > 60000;\n```",
        err="it claims the two are interchangeable and that HAVING runs first; HAVING filters groups after aggregation, and the example is invalid in most databases",
        sev=3,
    ),
    dict(
        lang="sql",
        q="Write a SQL query to find duplicate email addresses in a users table.",
        good="Group by email and keep groups with more than one row:\n\n```sql\nSELECT email, COUNT(*) AS n\nFROM users\nGROUP BY email\nHAVING COUNT(*) > 1;\n```\n\nIf case differences count as duplicates, group by `LOWER(email)` instead.",
        bad="Count the emails and filter:\n\n```sql\nSELECT email, COUNT(*) AS n\nFROM users\nWHERE COUNT(*) > 1\nGROUP BY email;\n```",
        err="aggregate functions are not allowed in WHERE, so the query fails; the filter belongs in HAVING",
        sev=2,
    ),
    dict(
        lang="sql",
        q="How do I update the price of product 42 to 19.99 in SQL?",
        good="Use `UPDATE` with a `WHERE` clause so only that row changes:\n\n```sql\nUPDATE products\nSET price = 19.99\nWHERE id = 42;\n```\n\nIt's a good habit to run `SELECT * FROM products WHERE id = 42;` first to confirm you're targeting the right row.",
        bad="Run this:\n\n```sql\nUPDATE products\nSET price = 19.99;\n```\n\nThis changes the price of product 42.",
        err="with no WHERE clause it sets the price of every product to 19.99",
        sev=3,
    ),
    dict(
        lang="sql",
        q="How do I select rows where the name starts with 'A' in SQL?",
        good="Use `LIKE` with the `%` wildcard:\n\n```sql\nSELECT *\nFROM people\nWHERE name LIKE 'A%';\n```\n\n`%` matches any sequence of characters. Depending on the database's collation, this may or may not be case-sensitive.",
        bad="Use a wildcard in the comparison:\n\n```sql\nSELECT *\nFROM people\nWHERE name = 'A*';\n```\n\nThe `*` matches any characters after the A.",
        err="= does an exact comparison, so it only matches the literal string 'A*'; SQL pattern matching uses LIKE with %",
        sev=2,
        split="validation",
    ),
    dict(
        lang="sql",
        q="How do I get the average salary per department in SQL?",
        good="Group by department and use `AVG`:\n\n```sql\nSELECT department, AVG(salary) AS avg_salary\nFROM employees\nGROUP BY department;\n```\n\nWrap it in `ROUND(AVG(salary), 2)` if you want two decimal places.",
        bad="Group by department and aggregate the salaries:\n\n```sql\nSELECT department, SUM(salary) AS avg_salary\nFROM employees\nGROUP BY department;\n```\n\nThis gives the average salary for each department.",
        err="SUM returns the total payroll, not the average; the column is just labelled avg_salary",
        sev=2,
        split="validation",
    ),
    dict(
        lang="javascript",
        q="How do I check if an array includes a value in JavaScript?",
        good="Use `Array.prototype.includes`:\n\n```javascript\nconst fruits = [\"apple\", \"pear\"];\nconsole.log(fruits.includes(\"pear\"));  // true\nconsole.log(fruits.includes(\"plum\"));  // false\n```\n\nIt returns a boolean and also handles `NaN` correctly, unlike `indexOf`.",
        bad='Use `indexOf` in the condition:\n\n```javascript\nconst fruits = ["apple", "pear"];\nif (fruits.indexOf("apple")) {\n  console.log("found it");\n}\n```\n\nThis logs "found it" whenever the value is in the array.',
        err='indexOf returns 0 for the first element (falsy) and -1 when missing (truthy), so the check is backwards for "apple"',
        sev=2,
    ),
    dict(
        lang="javascript",
        q="How do I remove the element at a given index from an array in JavaScript?",
        good="Use `splice`, which changes the array in place:\n\n```javascript\nconst arr = [\"a\", \"b\", \"c\"];\narr.splice(1, 1);  // removes \"b\"\nconsole.log(arr);  // [\"a\", \"c\"]\n```\n\nIf you need a new array instead, use `arr.filter((_, i) => i !== index)`.",
        bad='Use the `delete` operator:\n\n```javascript\nconst arr = ["a", "b", "c"];\ndelete arr[1];\nconsole.log(arr.length);  // 2\n```',
        err="delete leaves an empty slot, so the length stays 3 and the comment is wrong",
        sev=2,
    ),
    dict(
        lang="javascript",
        q="What's the difference between == and === in JavaScript?",
        good='`===` compares value and type without conversion; `==` converts types first.\n\n```javascript\n0 == "0"    // true  (string converted to number)\n0 === "0"   // false (different types)\nnull == undefined   // true\n```\n\nPrefer `===` so comparisons behave predictably.',
        bad='`==` is the strict one: it checks both value and type, while `===` converts types before comparing.\n\n```javascript\n0 == "0"    // false\n0 === "0"   // true\n```\n\nPrefer `==` for safer comparisons.',
        err="it reverses the two operators, and both example results are wrong",
        sev=3,
    ),
    dict(
        lang="javascript",
        q="Write a JavaScript function that returns the sum of an array of numbers.",
        good="Use `reduce` with a starting value of 0:\n\n```javascript\nfunction sum(nums) {\n  return nums.reduce((total, n) => total + n, 0);\n}\n\nsum([1, 2, 3]);  // 6\nsum([]);         // 0\n```\n\nThe initial value `0` also makes the empty array case work.",
        bad="Use `reduce`:\n\n```javascript\nfunction sum(nums) {\n  return nums.reduce((total, n) => total + n);\n}\n\nsum([1, 2, 3]);  // 6\n```\n\nThis works for any array, including an empty one.",
        err="reduce with no initial value throws a TypeError on an empty array, contrary to the claim",
        sev=1,
    ),
    dict(
        lang="javascript",
        q="How do I wait for a fetch request to finish in JavaScript?",
        good="Use `async`/`await`:\n\n```javascript\nasync function loadUser(id) {\n  const res = await fetch(`/api/users/${id}`);\n  if (!res.ok) throw new Error(`HTTP ${res.status}`);\n  return await res.json();\n}\n```\n\n`fetch` returns a Promise, and `res.json()` returns another one, so both need `await`.",
        bad="`fetch` returns the data directly:\n\n```javascript\nfunction loadUser(id) {\n  const data = fetch(`/api/users/${id}`).json();\n  return data;\n}\n```",
        err="fetch returns a Promise, which has no .json() method, so this throws a TypeError",
        sev=3,
    ),
    dict(
        lang="javascript",
        q="How do I convert a string to a number in JavaScript?",
        good='Use `Number` for whole strings and `parseInt`/`parseFloat` when there may be trailing text:\n\n```javascript\nNumber("42");          // 42\nparseInt("42px", 10);  // 42\nparseFloat("3.5kg");   // 3.5\nNumber("abc");         // NaN\n```\n\nCheck the result with `Number.isNaN` before using it.',
        bad='Add zero to it:\n\n```javascript\nconst n = "42" + 0;\nconsole.log(n);  // 42\n```\n\nJavaScript converts the string automatically.',
        err='+ with a string concatenates, so "42" + 0 is the string "420", not 42',
        sev=2,
    ),
    dict(
        lang="javascript",
        q="How do I loop over the keys and values of an object in JavaScript?",
        good="Use `Object.entries` with `for...of`:\n\n```javascript\nconst ages = { ana: 31, ben: 25 };\nfor (const [name, age] of Object.entries(ages)) {\n  console.log(name, age);\n}\n```\n\n`Object.keys` and `Object.values` work the same way if you only need one of them.",
        bad="Destructure directly in a `for...of` loop:\n\n```javascript\nconst ages = { ana: 31, ben: 25 };\nfor (const [name, age] of ages) {\n  console.log(name, age);\n}\n```",
        err="plain objects are not iterable, so for...of over ages throws a TypeError",
        sev=3,
        split="validation",
    ),
]

# --------------------------------------------------------------------------------------------
# Multilingual rows: a question in the user's language, a correct answer, and a fluent but
# wrong one. `err` describes the error in English for the annotator reasoning.
# --------------------------------------------------------------------------------------------

ML_ITEMS = [
    dict(lang="french", q="Comment puis-je améliorer mon sommeil ?",
         good="Voici quelques conseils simples : couchez-vous et levez-vous à heures fixes, évitez les écrans une heure avant de dormir, et gardez la chambre fraîche et sombre. Limitez aussi la caféine après le déjeuner. Si vous ne dormez toujours pas au bout de vingt minutes, levez-vous et faites une activité calme.",
         bad="Pour mieux dormir, buvez un grand café juste avant de vous coucher : la caféine aide le corps à se détendre. Regarder votre téléphone au lit est aussi un bon moyen de trouver le sommeil.",
         err="it recommends coffee and phone use right before bed, both of which make sleep worse", sev=3),
    dict(lang="french", q="En quelle année a eu lieu la prise de la Bastille ?",
         good="La prise de la Bastille a eu lieu le 14 juillet 1789, au début de la Révolution française. Cette date est devenue la fête nationale en France.",
         bad="La prise de la Bastille a eu lieu le 14 juillet 1815, à la fin de l'Empire de Napoléon. C'est pour cela que le 14 juillet est la fête nationale.",
         err="the storming of the Bastille was in 1789, not 1815", sev=2),
    dict(lang="french", q="Quelle est la différence entre « tu » et « vous » ?",
         good="« Tu » s'utilise avec la famille, les amis, les enfants et les personnes de ton âge dans un contexte détendu. « Vous » s'utilise avec des inconnus, des supérieurs ou dans un contexte formel, et aussi pour s'adresser à plusieurs personnes. En cas de doute, commence par « vous ».",
         bad="« Vous » est réservé aux enfants et aux amis proches, tandis que « tu » s'utilise uniquement avec les inconnus et les supérieurs. Il vaut donc mieux tutoyer son patron.",
         err="it reverses the formal and informal pronouns", sev=3),
    dict(lang="french", q="Comment faire une pâte à crêpes simple ?",
         good="Pour environ dix crêpes : mélangez 250 g de farine, 4 œufs et une pincée de sel, puis ajoutez peu à peu 50 cl de lait en fouettant pour éviter les grumeaux. Ajoutez 50 g de beurre fondu et laissez reposer la pâte une heure. Faites cuire dans une poêle chaude légèrement beurrée.",
         bad="Mélangez 250 g de farine avec 5 litres d'eau froide, sans œufs ni lait, puis faites cuire immédiatement à feu très doux pendant vingt minutes par crêpe.",
         err="the proportions and cooking instructions are wrong and would not produce crêpes", sev=2),
    dict(lang="french", q="Quels sont les bienfaits de la marche quotidienne ?",
         good="Marcher trente minutes par jour renforce le cœur, aide à contrôler le poids et améliore l'humeur. La marche réduit aussi le stress, favorise un meilleur sommeil et renforce les os et les muscles des jambes. C'est facile à intégrer : prenez les escaliers ou descendez du bus un arrêt plus tôt.",
         bad="La marche n'a aucun effet sur la santé ; seule la course intensive de plus de deux heures par jour apporte un bénéfice.",
         err="it falsely claims walking has no health benefits", sev=3, split="validation"),
    dict(lang="spanish", q="¿Cuál es el río más largo de España?",
         good="El Tajo es el río más largo de la península ibérica, con unos 1.007 km, aunque desemboca en Portugal. Si hablamos del río más largo que discurre íntegramente por España, es el Ebro, con unos 910 km.",
         bad="El río más largo de España es el Guadalquivir, con unos 3.000 km, y nace en los Pirineos.",
         err="the Guadalquivir is about 650 km long and does not rise in the Pyrenees", sev=2),
    dict(lang="spanish", q="¿Cómo puedo ahorrar dinero cada mes?",
         good="Empieza por anotar todos tus gastos durante un mes para ver en qué se va el dinero. Después, fija un presupuesto y aparta una cantidad para ahorrar nada más cobrar, por ejemplo el 10 %. Revisa las suscripciones que no uses, cocina más en casa y compara precios antes de las compras grandes.",
         bad="La mejor forma de ahorrar es usar la tarjeta de crédito para todo y pagar solo el mínimo cada mes; así el dinero se queda en tu cuenta.",
         err="paying only the minimum on a credit card builds expensive debt rather than savings", sev=3),
    dict(lang="spanish", q="¿Quién escribió «Cien años de soledad»?",
         good="«Cien años de soledad» la escribió el colombiano Gabriel García Márquez y se publicó en 1967. La novela narra la historia de la familia Buendía en el pueblo ficticio de Macondo y es una obra clave del realismo mágico.",
         bad="«Cien años de soledad» la escribió el argentino Jorge Luis Borges y se publicó en 1940.",
         err="the novel is by Gabriel García Márquez (1967), not Borges", sev=2),
    dict(lang="spanish", q="¿Qué debo hacer si me pica una abeja?",
         good="Retira el aguijón cuanto antes raspándolo con una tarjeta o con la uña, sin apretarlo. Lava la zona con agua y jabón y aplica frío durante unos minutos para reducir la hinchazón. Busca atención médica urgente si tienes dificultad para respirar, hinchazón en la cara o mareos.",
         bad="Aprieta el aguijón con los dedos para sacar todo el veneno y cubre la picadura con mantequilla caliente.",
         err="squeezing the stinger injects more venom, and hot butter is a harmful remedy", sev=3),
    dict(lang="spanish", q="¿Cuántos días tiene un año bisiesto?",
         good="Un año bisiesto tiene 366 días en lugar de 365. El día extra se añade a febrero, que pasa a tener 29 días. En general son bisiestos los años divisibles entre 4, salvo los años seculares que no son divisibles entre 400.",
         bad="Un año bisiesto tiene 364 días, porque se le quita un día a febrero.",
         err="a leap year has 366 days, not 364", sev=2, split="validation"),
    dict(lang="german", q="Wie lange muss man ein Ei kochen, damit es weich ist?",
         good="Für ein weich gekochtes Ei der Größe M legst du es in kochendes Wasser und kochst es etwa 5 bis 6 Minuten. Danach schreckst du es kurz mit kaltem Wasser ab, damit es nicht weitergart. Das Eiweiß ist dann fest und das Eigelb noch flüssig.",
         bad="Ein weiches Ei muss mindestens 20 Minuten kochen, sonst ist das Eigelb noch roh.",
         err="20 minutes gives a hard-boiled egg; a soft-boiled egg takes about 5 to 6 minutes", sev=2),
    dict(lang="german", q="Wer hat die Relativitätstheorie entwickelt?",
         good="Die Relativitätstheorie wurde von Albert Einstein entwickelt. Die spezielle Relativitätstheorie veröffentlichte er 1905, die allgemeine 1915. Sie beschreibt unter anderem, dass die Lichtgeschwindigkeit für alle Beobachter gleich ist und dass Masse die Raumzeit krümmt.",
         bad="Die Relativitätstheorie wurde 1687 von Isaac Newton entwickelt, zusammen mit seinen Bewegungsgesetzen.",
         err="relativity was developed by Einstein (1905/1915), not Newton in 1687", sev=2),
    dict(lang="german", q="Wie kann ich beim Heizen Energie sparen?",
         good="Senke die Raumtemperatur um ein Grad, das spart etwa sechs Prozent Heizenergie. Lüfte mehrmals täglich kurz mit weit geöffnetem Fenster statt dauerhaft gekippt. Halte Heizkörper frei von Möbeln und Vorhängen und entlüfte sie bei Bedarf.",
         bad="Am besten lässt du das Fenster den ganzen Tag gekippt, während die Heizung auf höchster Stufe läuft; so verteilt sich die Wärme besser.",
         err="leaving a window tilted open with the heating on full wastes energy", sev=3),
    dict(lang="german", q="Was ist der Unterschied zwischen „seit“ und „seid“?",
         good="„Seit“ ist eine Präposition oder Konjunktion und bezieht sich auf die Zeit: Ich wohne seit 2019 in Köln. „Seid“ ist eine Form des Verbs „sein“: Ihr seid heute sehr früh. Eine Eselsbrücke: „seit“ hat ein t wie „Zeit“.",
         bad="„Seid“ bezieht sich auf die Zeit, zum Beispiel: Ich wohne seid 2019 in Köln. „Seit“ ist eine Form von „sein“: Ihr seit heute früh.",
         err="it swaps seit and seid, so both example sentences are misspelled", sev=2),
    dict(lang="german", q="Wie viele Bundesländer hat Deutschland?",
         good="Deutschland hat 16 Bundesländer. Drei davon sind Stadtstaaten: Berlin, Hamburg und Bremen. Das flächenmäßig größte Bundesland ist Bayern, das bevölkerungsreichste ist Nordrhein-Westfalen.",
         bad="Deutschland hat 12 Bundesländer. Das größte ist Niedersachsen, und die Hauptstadt ist Bonn.",
         err="Germany has 16 states, Bavaria is the largest, and the capital is Berlin", sev=2, split="validation"),
    dict(lang="chinese", q="如何提高学习效率？",
         good="可以试试以下方法：第一，把任务拆成小块，每次专注学习25到30分钟，然后休息5分钟。第二，用自测代替反复阅读，比如做练习题或合上书回忆要点。第三，保证充足睡眠，睡眠有助于巩固记忆。最后，学习时把手机放到另一个房间，减少干扰。",
         bad="提高学习效率最好的方法是通宵学习，睡眠对记忆没有任何帮助。",
         err="it recommends skipping sleep and claims sleep does not help memory", sev=3),
    dict(lang="chinese", q="长城有多长？",
         good="根据2012年国家文物局公布的数据，历代长城总长度约为21196千米。我们今天看到的大部分城墙修建于明朝。长城并不是一道连续的城墙，而是由许多段城墙、关隘和烽火台组成。",
         bad="长城总长度约为800千米，全部修建于唐朝，是一道完全连续的城墙。",
         err="the wall's total length is about 21,000 km, mostly Ming dynasty, and it is not continuous", sev=2),
    dict(lang="chinese", q="水的沸点是多少？",
         good="在标准大气压下，纯水的沸点是100摄氏度，也就是212华氏度。在海拔较高的地方，气压较低，水的沸点也会降低，例如在拉萨，水大约在88摄氏度左右就会沸腾。",
         bad="水的沸点永远是100摄氏度，无论海拔多高都不会改变。",
         err="the boiling point drops at high altitude, so it is not always 100 °C", sev=1),
    dict(lang="chinese", q="怎样泡一杯好喝的绿茶？",
         good="泡绿茶时，水温最好在75到85摄氏度之间，不要用刚烧开的水，否则茶叶容易被烫熟，味道发苦。一般3克茶叶配150毫升水，浸泡2到3分钟即可。好的绿茶可以续泡两三次。",
         bad="泡绿茶一定要用100摄氏度的沸水，并且至少浸泡15分钟，这样味道最好。",
         err="boiling water and a 15-minute steep make green tea bitter", sev=2),
    dict(lang="chinese", q="太阳系有几颗行星？",
         good="太阳系有八颗行星，按离太阳由近到远依次是：水星、金星、地球、火星、木星、土星、天王星和海王星。冥王星在2006年被重新归类为矮行星。",
         bad="太阳系有十颗行星，冥王星是其中最大的一颗。",
         err="there are eight planets, and Pluto is a dwarf planet, not the largest planet", sev=2, split="validation"),
    dict(lang="italian", q="Come si prepara un buon caffè con la moka?",
         good="Riempi la caldaia d'acqua fino alla valvola, senza superarla. Metti il caffè macinato nel filtro senza pressarlo e avvita bene la moka. Scalda a fuoco medio-basso e togli la moka dal fuoco appena il caffè inizia a gorgogliare, così non diventa amaro.",
         bad="Riempi la caldaia d'acqua fino all'orlo, oltre la valvola, pressa il caffè con forza e lascia la moka sul fuoco alto per dieci minuti dopo che ha finito di uscire.",
         err="overfilling past the valve and pressing the coffee are unsafe and make the coffee burnt", sev=2),
    dict(lang="italian", q="Chi ha dipinto la volta della Cappella Sistina?",
         good="La volta della Cappella Sistina fu affrescata da Michelangelo Buonarroti tra il 1508 e il 1512, su incarico di papa Giulio II. Michelangelo dipinse anche il Giudizio Universale sulla parete dell'altare, completato nel 1541.",
         bad="La volta della Cappella Sistina fu dipinta interamente da Leonardo da Vinci intorno al 1700.",
         err="the ceiling was painted by Michelangelo in 1508-1512, not by Leonardo around 1700", sev=2, split="validation"),
    dict(lang="italian", q="Quali consigli mi dai per imparare una lingua straniera?",
         good="Studia un po' ogni giorno, anche solo venti minuti. Impara prima le parole più comuni e ripassale con le flashcard. Ascolta podcast e guarda serie in lingua originale, e cerca presto qualcuno con cui parlare. Non aver paura di sbagliare: gli errori fanno parte dell'apprendimento.",
         bad="Il modo migliore è studiare solo la grammatica per due anni, senza mai ascoltare né parlare la lingua.",
         err="it advises never listening or speaking, which is poor advice", sev=2),
    dict(lang="portuguese", q="Qual é a capital do Brasil?",
         good="A capital do Brasil é Brasília. A cidade foi inaugurada em 1960, durante o governo de Juscelino Kubitschek, para substituir o Rio de Janeiro como capital. O plano urbano é de Lúcio Costa, e muitos edifícios são de Oscar Niemeyer.",
         bad="A capital do Brasil é São Paulo, que substituiu Salvador como capital em 1990.",
         err="the capital is Brasília (since 1960), not São Paulo", sev=3),
    dict(lang="portuguese", q="Como posso reduzir o desperdício de comida em casa?",
         good="Planeje as refeições da semana e faça uma lista antes de ir ao mercado. Guarde os alimentos corretamente e deixe na frente da geladeira o que vence primeiro. Aproveite as sobras em novas receitas e congele o que não vai consumir a tempo.",
         bad="Compre sempre o dobro do que precisa e jogue fora as sobras no mesmo dia, para garantir que tudo esteja fresco.",
         err="buying double and discarding leftovers increases food waste", sev=3),
]

# Per-language templates for the generic failures of multilingual rows.
ML_TEMPLATES = {
    "french": dict(
        refusal="Je suis désolé, mais je ne peux pas vous aider avec cette demande.",
        vague="C'est une excellente question ! Il y a beaucoup de facteurs à prendre en compte, et tout dépend de votre situation. Le mieux est de bien vous renseigner et de faire ce qui vous convient.",
        rude="Franchement, cherchez vous-même. Ce n'est pas compliqué.",
    ),
    "spanish": dict(
        refusal="Lo siento, pero no puedo ayudarte con esa pregunta.",
        vague="¡Buena pregunta! Hay muchos factores a tener en cuenta y todo depende de tu situación. Lo mejor es informarte bien y hacer lo que funcione para ti.",
        rude="¿En serio? Búscalo tú mismo, no es tan difícil.",
    ),
    "german": dict(
        refusal="Es tut mir leid, aber dabei kann ich dir nicht helfen.",
        vague="Gute Frage! Da spielen viele Faktoren eine Rolle, und es hängt ganz von deiner Situation ab. Am besten informierst du dich gründlich und machst, was für dich passt.",
        rude="Ernsthaft? Das kannst du doch selbst googeln.",
    ),
    "chinese": dict(
        refusal="抱歉，我无法回答这个问题。",
        vague="这是一个很好的问题！这取决于很多因素，每个人的情况都不一样。建议你多了解一下，然后选择适合自己的方法。",
        rude="这种问题你自己查一下不就知道了？别浪费我的时间。",
    ),
    "italian": dict(
        refusal="Mi dispiace, ma non posso aiutarti con questa richiesta.",
        vague="Ottima domanda! Ci sono molti fattori da considerare e tutto dipende dalla tua situazione. La cosa migliore è informarsi bene e fare ciò che funziona per te.",
        rude="Davvero? Cercalo da solo, non è difficile.",
    ),
    "portuguese": dict(
        refusal="Desculpe, mas não posso ajudar com essa pergunta.",
        vague="Ótima pergunta! Há muitos fatores a considerar e tudo depende da sua situação. O melhor é se informar bem e fazer o que funciona para você.",
        rude="Sério? Pesquise você mesmo, não é difícil.",
    ),
}
ML_ENGLISH_ONLY = [
    "Sorry, I can only answer in English. Could you ask your question in English?",
    "I don't understand this language well. Please write your question in English and I'll help.",
]

# --------------------------------------------------------------------------------------------
# Parsing the topic entries
# --------------------------------------------------------------------------------------------


def parse_topics(text: str, domain: str) -> list[dict]:
    topics = []
    for block in re.split(r"\n\s*\n", text.strip()):
        t = {"domain": domain, "kind": "info", "points": [], "wrong": {}, "viol": None}
        for line in block.strip().splitlines():
            key, _, val = line.partition(":")
            val = val.strip()
            if key == "Q":
                t["q"] = val
            elif key == "S":
                t["s"] = val
            elif key == "K":
                t["kind"] = val
            elif key == "A":
                t["points"].append(val)
            elif key == "W":
                idx, _, txt = val.partition("|")
                t["wrong"][int(idx) - 1] = txt.strip()
            elif key == "V":
                t["viol"] = val.replace("\\n", "\n")
            else:
                raise ValueError(f"bad line in topic block: {line!r}")
        assert t.get("q") and t.get("s") and t["points"], block
        assert t["kind"] in ("info", "howto", "prose", "poem"), block
        assert all(0 <= i < len(t["points"]) for i in t["wrong"]), block
        topics.append(t)
    return topics


def wrong_points(t: dict) -> list[str]:
    pts = list(t["points"])
    for i, w in t["wrong"].items():
        pts[i] = w
    return pts


# --------------------------------------------------------------------------------------------
# STEM calculation topics: seeded generators, each returns a topic with the same fields as a
# hand-written one plus `ans` / `wans` (the short final answer, right and wrong).
# --------------------------------------------------------------------------------------------


def num(x) -> str:
    """Format a number: thousands separators, at most two decimals, no trailing zeros."""
    if isinstance(x, Fraction):
        x = float(x)
    if abs(x - round(x)) < 1e-9:
        return f"{int(round(x)):,}"
    s = f"{x:,.2f}".rstrip("0").rstrip(".")
    return s


def a_n(n) -> str:
    """The English article for a spoken number: 'an 8-ohm', 'a 5-ohm'."""
    return "an" if re.match(r"(8|11|18)(\D|$)", str(n)) else "a"


def calc_topic(q, s, points, wpoints, ans, wans):
    wrong = {i: w for i, (p, w) in enumerate(zip(points, wpoints)) if p != w}
    return {"domain": "stem", "kind": "calc", "q": q, "s": s, "points": points, "wrong": wrong,
            "viol": None, "ans": ans, "wans": wans}


def gen_mult(rng):
    a = rng.choice([n for n in range(12, 99) if n % 10])
    b = rng.choice([n for n in range(13, 99) if n % 10])
    bt, bu = b - b % 10, b % 10
    p, x, y = a * b, a * bt, a * bu
    wp = p + rng.choice([-100, -20, -10, 10, 20, 100])
    q = rng.choice(["What is {a} × {b}?", "What's {a} times {b}?", "Can you work out {a} multiplied by {b}?",
                    "Quick math question: what is {a} × {b}?"]).format(a=a, b=b)
    pts = [f"{a} × {b} = {num(p)}.", f"Split {b} into {bt} + {bu}: {a} × {bt} = {num(x)} and {a} × {bu} = {num(y)}, and {num(x)} + {num(y)} = {num(p)}."]
    wpts = [f"{a} × {b} = {num(wp)}.", f"Split {b} into {bt} + {bu}: {a} × {bt} = {num(x)} and {a} × {bu} = {num(y)}, and {num(x)} + {num(y)} = {num(wp)}."]
    return calc_topic(q, "this multiplication", pts, wpts, num(p), num(wp))


def gen_percent(rng):
    pct = rng.choice([5, 10, 15, 20, 25, 30, 40, 60, 75])
    n = rng.choice(range(40, 901, 20))
    r = Fraction(n * pct, 100)
    dec, wdec = num(pct / 100), num(pct / 10)
    wr = r * 10
    form = rng.randrange(3)
    if form == 0:
        q = f"What is {pct}% of {n}?"
        p0, w0 = f"{pct}% of {n} is {num(r)}.", f"{pct}% of {n} is {num(wr)}."
        a, wa = num(r), num(wr)
    elif form == 1:
        q = f"A jacket costs ${n} and is {pct}% off. How much money do I save?"
        p0, w0 = f"You save ${num(r)}.", f"You save ${num(wr)}."
        a, wa = f"${num(r)}", f"${num(wr)}"
    else:
        q = f"How much is a {pct}% tip on a ${n} bill?"
        p0, w0 = f"A {pct}% tip on ${n} is ${num(r)}.", f"A {pct}% tip on ${n} is ${num(wr)}."
        a, wa = f"${num(r)}", f"${num(wr)}"
    pts = [p0, f"Convert {pct}% to a decimal, {dec}, and multiply: {dec} × {n} = {num(r)}."]
    wpts = [w0, f"Convert {pct}% to a decimal, {wdec}, and multiply: {wdec} × {n} = {num(wr)}."]
    return calc_topic(q, "this percentage", pts, wpts, a, wa)


def gen_linear(rng):
    a = rng.randint(2, 9)
    x = rng.randint(2, 15)
    b = rng.randint(1, 30)
    c = a * x + b
    q = rng.choice(["Solve for x: {a}x + {b} = {c}.", "What is x if {a}x + {b} = {c}?", "Find x in the equation {a}x + {b} = {c}."]).format(a=a, b=b, c=c)
    pts = [f"x = {x}.", f"Subtract {b} from both sides to get {a}x = {c - b}, then divide both sides by {a}: x = {x}.",
           f"Check: {a} × {x} + {b} = {a * x} + {b} = {c}."]
    if (c + b) % a == 0 and (c + b) // a != x:
        wx = (c + b) // a
        wpts = [f"x = {wx}.", f"Add {b} to both sides to get {a}x = {c + b}, then divide both sides by {a}: x = {wx}.",
                f"Check: {a} × {wx} + {b} = {c}."]
    else:
        wx = x + rng.choice([-1, 1, 2])
        wpts = [f"x = {wx}.", f"Subtract {b} from both sides to get {a}x = {c - b}, then divide both sides by {a}: x = {wx}.",
                f"Check: {a} × {wx} + {b} = {c}."]
    return calc_topic(q, "this equation", pts, wpts, f"x = {x}", f"x = {wx}")


def gen_speed(rng):
    who, pron, lo, hi = rng.choice([("A train", "its", 60, 150), ("A car", "its", 40, 110), ("A cyclist", "their", 12, 30),
                                    ("A bus", "its", 30, 70), ("A runner", "their", 8, 15)])
    t = rng.choice([0.5, 1.5, 2, 2.5, 3, 4])
    v = rng.randint(lo, hi)
    if t == 0.5 and v % 2:
        v += 1
    d = v * t
    tt = "30 minutes" if t == 0.5 else f"{num(t)} hours"
    q = f"{who} travels {num(d)} km in {tt}. What is {pron} average speed?"
    wv = d * t
    pts = [f"The average speed is {v} km/h.", f"Average speed is distance divided by time: {num(d)} km ÷ {num(t)} h = {v} km/h."]
    wpts = [f"The average speed is {num(wv)} km/h.", f"Average speed is distance multiplied by time: {num(d)} km × {num(t)} h = {num(wv)} km/h."]
    return calc_topic(q, "average speed", pts, wpts, f"{v} km/h", f"{num(wv)} km/h")


def gen_temp(rng):
    if rng.random() < 0.6:
        c = rng.choice(list(range(-20, 45, 5)) + [37])
        f = Fraction(c * 9, 5) + 32
        c95 = Fraction(c * 9, 5)
        q = rng.choice(["What is {c}°C in Fahrenheit?", "Convert {c}°C to Fahrenheit.",
                        "The forecast says {c}°C. What is that in Fahrenheit?"]).format(c=c)
        pts = [f"{c}°C is {num(f)}°F.", f"Use F = C × 9/5 + 32: {c} × 9/5 = {num(c95)}, and {num(c95)} + 32 = {num(f)}."]
        wpts = [f"{c}°C is {num(c95)}°F.", f"Use F = C × 9/5: {c} × 9/5 = {num(c95)}, so that's the answer in Fahrenheit."]
        return calc_topic(q, "temperature conversion", pts, wpts, f"{num(f)}°F", f"{num(c95)}°F")
    f = rng.choice([14, 23, 41, 50, 59, 68, 77, 86, 95, 104, 113, 212])
    c = Fraction((f - 32) * 5, 9)
    wc = Fraction(f * 5, 9)
    q = rng.choice(["What is {f}°F in Celsius?", "Convert {f}°F to Celsius.", "A recipe says {f}°F. What is that in Celsius?"]).format(f=f)
    pts = [f"{f}°F is {num(c)}°C.", f"Use C = (F − 32) × 5/9: {f} − 32 = {f - 32}, and {f - 32} × 5/9 = {num(c)}."]
    wpts = [f"{f}°F is about {num(round(float(wc), 1))}°C.", f"Use C = F × 5/9: {f} × 5/9 ≈ {num(round(float(wc), 1))}."]
    return calc_topic(q, "temperature conversion", pts, wpts, f"{num(c)}°C", f"{num(round(float(wc), 1))}°C")


def gen_rect(rng):
    l, w = rng.randint(3, 15), rng.randint(2, 12)
    if l == w:
        l += 1
    unit, tmpl = rng.choice([
        ("meters", "A rectangular room is {l} m long and {w} m wide. What is its floor area?"),
        ("centimeters", "What is the area of a rectangle that measures {l} cm by {w} cm?"),
        ("feet", "A garden bed is {l} feet long and {w} feet wide. How much area does it cover?"),
    ])
    A, P = l * w, 2 * (l + w)
    pts = [f"The area is {A} square {unit}.", f"For a rectangle, area = length × width, so {l} × {w} = {A} square {unit}."]
    wpts = [f"The area is {P} square {unit}.", f"For a rectangle, area = 2 × (length + width), so 2 × ({l} + {w}) = {P} square {unit}."]
    return calc_topic(tmpl.format(l=l, w=w), "this area", pts, wpts, f"{A} square {unit}", f"{P} square {unit}")


UNITS = [  # big, small, factor, singular, wrong factor
    ("kilometers", "meters", 1000, "kilometer", 100), ("meters", "centimeters", 100, "meter", 10),
    ("kilograms", "grams", 1000, "kilogram", 100), ("liters", "milliliters", 1000, "liter", 100),
    ("hours", "minutes", 60, "hour", 100), ("minutes", "seconds", 60, "minute", 100),
    ("days", "hours", 24, "day", 12), ("feet", "inches", 12, "foot", 10), ("yards", "feet", 3, "yard", 12),
]


def gen_units(rng):
    big, small, f, sing, wf = rng.choice(UNITS)
    x = rng.choice([1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 7.5, 8, 12, 15])
    r, wr = x * f, x * wf
    q = rng.choice(["How many {small} are in {x} {big}?", "Convert {x} {big} to {small}.", "What is {x} {big} in {small}?"]).format(
        small=small, x=num(x), big=big)
    pts = [f"{num(x)} {big} is {num(r)} {small}.", f"Since 1 {sing} = {num(f)} {small}, multiply: {num(x)} × {num(f)} = {num(r)}."]
    wpts = [f"{num(x)} {big} is {num(wr)} {small}.", f"Since 1 {sing} = {num(wf)} {small}, multiply: {num(x)} × {num(wf)} = {num(wr)}."]
    return calc_topic(q, "this unit conversion", pts, wpts, f"{num(r)} {small}", f"{num(wr)} {small}")


def gen_ohm(rng):
    while True:
        V = rng.choice([3, 5, 6, 9, 12, 24, 120, 230])
        R = rng.choice([2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 40, 50, 100])
        I = Fraction(V, R)
        if (I * 100).denominator == 1:
            break
    q = rng.choice(["A {V} V battery is connected across a {R} Ω resistor. What current flows?",
                    "What current flows through {aR} {R}-ohm resistor connected to {V} volts?"]).format(V=V, R=R, aR=a_n(R))
    pts = [f"The current is {num(I)} A.", f"By Ohm's law, I = V ÷ R = {V} ÷ {R} = {num(I)} amps."]
    wpts = [f"The current is {num(V * R)} A.", f"By Ohm's law, I = V × R = {V} × {R} = {num(V * R)} amps."]
    return calc_topic(q, "Ohm's law", pts, wpts, f"{num(I)} A", f"{num(V * R)} A")


def gen_mean(rng):
    k = rng.choice([4, 5])
    xs = [rng.randint(50, 99) for _ in range(k)]
    xs[-1] += (-sum(xs)) % k
    if xs[-1] > 100:
        xs[-1] -= k
    s = sum(xs)
    m = s // k
    lst = ", ".join(map(str, xs[:-1])) + f", and {xs[-1]}"
    q = rng.choice([f"What is the average of {lst}?", f"My test scores were {lst}. What's my average?"])
    pts = [f"The average is {m}.", f"Add them up to get {s}, then divide by {k}: {s} ÷ {k} = {m}."]
    if rng.random() < 0.5:
        wm = Fraction(s, k - 1)
        wpts = [f"The average is {num(round(float(wm), 2))}.", f"Add them up to get {s}, then divide by {k - 1}: {s} ÷ {k - 1} = {num(round(float(wm), 2))}."]
    else:
        ws = s + 10
        wm = Fraction(ws, k)
        wpts = [f"The average is {num(wm)}.", f"Add them up to get {ws}, then divide by {k}: {ws} ÷ {k} = {num(wm)}."]
    return calc_topic(q, "this average", pts, wpts, str(m), num(round(float(wm), 2)))


def gen_interest(rng):
    P = rng.choice([500, 1000, 1200, 2000, 2500, 4000, 5000])
    r = rng.choice([2, 3, 4, 5, 6])
    t = rng.choice([2, 3, 4, 5])
    I, I1 = Fraction(P * r * t, 100), Fraction(P * r, 100)
    q = f"If I put ${num(P)} in an account that pays {r}% simple interest per year, how much interest will I earn in {t} years?"
    pts = [f"You would earn ${num(I)} in interest.", f"Simple interest = principal × rate × time: {num(P)} × {num(r / 100)} × {t} = {num(I)}.",
           f"So the balance after {t} years would be ${num(P + I)}."]
    wpts = [f"You would earn ${num(I1)} in interest.", f"Simple interest = principal × rate: {num(P)} × {num(r / 100)} = {num(I1)}.",
            f"So the balance after {t} years would be ${num(P + I1)}."]
    return calc_topic(q, "simple interest", pts, wpts, f"${num(I)}", f"${num(I1)}")


def gen_circle(rng):
    r = rng.randint(2, 12)
    A, C = round(math.pi * r * r, 1), round(2 * math.pi * r, 1)
    q = rng.choice(["What is the area of a circle with a radius of {r} cm?", "A round table top has a radius of {r} cm. What is its area?"]).format(r=r)
    pts = [f"The area is about {num(A)} cm².", f"Use A = πr²: π × {r}² = π × {r * r} ≈ {num(A)} cm²."]
    wpts = [f"The area is about {num(C)} cm².", f"Use A = 2πr: 2 × π × {r} ≈ {num(C)} cm²."]
    return calc_topic(q, "the area of a circle", pts, wpts, f"about {num(A)} cm²", f"about {num(C)} cm²")


def gen_fraction(rng):
    b, d = rng.sample([2, 3, 4, 5, 6, 8, 9, 10], 2)
    a = rng.choice([k for k in range(1, b) if math.gcd(k, b) == 1])
    c = rng.choice([k for k in range(1, d) if math.gcd(k, d) == 1])
    L = b * d // math.gcd(b, d)
    n1, n2 = a * L // b, c * L // d
    res = Fraction(a, b) + Fraction(c, d)
    rs = f"{res.numerator}/{res.denominator}" if res.denominator != 1 else str(res.numerator)
    simpl = f", which simplifies to {rs}" if (n1 + n2, L) != (res.numerator, res.denominator) else ""
    q = rng.choice(["What is {a}/{b} + {c}/{d}?", "Add the fractions {a}/{b} and {c}/{d}.", "How much is {a}/{b} plus {c}/{d}?"]).format(a=a, b=b, c=c, d=d)
    pts = [f"{a}/{b} + {c}/{d} = {rs}.", f"Use a common denominator of {L}: {a}/{b} = {n1}/{L} and {c}/{d} = {n2}/{L}, so the sum is {n1 + n2}/{L}{simpl}."]
    wpts = [f"{a}/{b} + {c}/{d} = {a + c}/{b + d}.", f"Add the numerators and add the denominators: {a} + {c} = {a + c} and {b} + {d} = {b + d}, so the sum is {a + c}/{b + d}."]
    return calc_topic(q, "adding fractions", pts, wpts, rs, f"{a + c}/{b + d}")


def gen_kinetic(rng):
    m = rng.choice([2, 4, 5, 10, 20, 50, 80, 1000])
    v = rng.choice([2, 3, 4, 5, 6, 10, 20])
    ke, wke = Fraction(m * v * v, 2), Fraction(m * v, 2)
    q = rng.choice(["What is the kinetic energy of {am} {m} kg object moving at {v} m/s?",
                    "{Am} {m} kg cart rolls at {v} m/s. How much kinetic energy does it have?"]).format(m=m, v=v, am=a_n(m), Am=cap(a_n(m)))
    pts = [f"The kinetic energy is {num(ke)} joules.", f"Use KE = ½mv²: ½ × {m} × {v}² = ½ × {m} × {v * v} = {num(ke)} J."]
    wpts = [f"The kinetic energy is {num(wke)} joules.", f"Use KE = ½mv: ½ × {m} × {v} = {num(wke)} J."]
    return calc_topic(q, "kinetic energy", pts, wpts, f"{num(ke)} J", f"{num(wke)} J")


def gen_density(rng):
    while True:
        V = rng.choice([10, 20, 25, 40, 50, 80, 100])
        rho = rng.choice([0.4, 0.5, 0.6, 0.8, 2, 2.5, 3, 7.5, 8])
        m = rho * V
        if abs(m - round(m)) < 1e-9:
            break
    wrho = V / m
    sink = "sink" if rho > 1 else "float"
    wsink = "sink" if wrho > 1 else "float"
    q = f"A block has a mass of {num(m)} g and a volume of {V} cm³. What is its density, and will it float in water?"
    pts = [f"Its density is {num(rho)} g/cm³, so it will {sink}.", f"Density = mass ÷ volume = {num(m)} g ÷ {V} cm³ = {num(rho)} g/cm³.",
           f"Water's density is about 1 g/cm³, and objects denser than water sink while less dense ones float."]
    wpts = [f"Its density is {num(round(wrho, 2))} g/cm³, so it will {wsink}.", f"Density = volume ÷ mass = {V} cm³ ÷ {num(m)} g = {num(round(wrho, 2))} g/cm³.",
            pts[2]]
    return calc_topic(q, "density", pts, wpts, f"{num(rho)} g/cm³ ({sink}s)", f"{num(round(wrho, 2))} g/cm³")


CALC_GENERATORS = [gen_mult, gen_percent, gen_linear, gen_speed, gen_temp, gen_rect, gen_units, gen_ohm, gen_mean,
                   gen_interest, gen_circle, gen_fraction, gen_kinetic, gen_density]


def make_calc_topics(rng, n: int, seen: set) -> list[dict]:
    out = []
    i = 0
    while len(out) < n:
        t = CALC_GENERATORS[i % len(CALC_GENERATORS)](rng)
        i += 1
        if t["q"] in seen or not t["wrong"]:
            continue
        seen.add(t["q"])
        out.append(t)
    return out


# --------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------

OPENERS = ["", "", "", "", "Sure! ", "Happy to help. ", "Good question. ", "Of course. ", "Great question! ",
           "Absolutely. ", "Sure thing. ", "Glad you asked. "]
REFORMAT_OPENERS = ["", "", "Sure! ", "Of course. ", "No problem. ", "Sure thing. "]
CLOSINGS = ["Hope this helps!", "Let me know if you'd like more detail.", "Good luck!",
            "Feel free to ask if anything is unclear.", "I hope that answers your question."]
PROSE_INTROS = ["", "", "Here's one you could use:\n\n", "Sure! Here's a draft:\n\n", "How about this:\n\n",
                "Here you go:\n\n", "Of course. Try this:\n\n"]
PROSE_CLOSINGS = ["Feel free to adjust it to your own style.", "Happy to tweak the tone if you'd like.",
                  "You can change the details to fit."]
BULLET_INTROS = ["Here are the key points:", "Here's a quick overview:", "A few things to know:",
                 "Here's what matters most:", "The main points:"]
STEP_INTROS = ["Here's how to do it:", "Follow these steps:", "Step by step:", "Try this:", "Here's what to do:"]
NUMBERED_INFO_INTROS = ["Here are the main points:", "Here's a summary:", "Briefly:", "In order of importance:"]
REFORMAT_LIST_INTROS = ["Sure, here it is as a list:", "Here you go:", "Of course:", "Here's the same answer as a list:", ""]
SHORT_FORMS = [("Short answer: ", "\n\n"), ("In brief: ", "\n\nMore detail: "), ("", "\n\nA bit more detail: "),
               ("The quick answer: ", " ")]
CALC_STEP_INTROS = ["Here's the working:", "Step by step:", "Let's work it out:"]

CONSTRAINT_SUFFIX = {
    "one_sentence": ["Answer in one sentence.", "Please keep it to one sentence.", "One sentence only, please."],
    "numbered": ["Please use a numbered list.", "Format the answer as a numbered list.", "Can you give it to me as a numbered list?"],
    "bullets": ["Use bullet points, please.", "Please answer with bullet points."],
    "no_list": ["Please answer in a short paragraph, no lists.", "No bullet points, please; just a short paragraph."],
    "word_limit": ["Keep it under 40 words.", "Please answer in 40 words or fewer."],
    "show_work": ["Please show your working.", "Show the steps, please."],
    "just_answer": ["Just give me the answer, no explanation needed.", "Only the final answer, please."],
}
REFORMAT_REQUEST = {
    "numbered": ["Can you put that in a numbered list?", "Could you rewrite that as numbered steps?"],
    "bullets": ["Could you turn that into bullet points?", "Can you format that as a bulleted list?"],
    "one_sentence": ["Can you sum that up in one sentence?", "Thanks. Could you shorten that to a single sentence?"],
    "just_answer": ["Thanks. So what's the final answer, in one line?", "OK, can you just give me the final result?"],
}
CONSTRAINT_DESC = {
    "one_sentence": "a one-sentence answer", "numbered": "a numbered list", "bullets": "bullet points",
    "no_list": "a short paragraph without lists", "word_limit": "an answer under 40 words",
    "show_work": "the working to be shown", "just_answer": "just the final answer",
    "builtin": "a specific length and format in the prompt",
}
FOLLOWUP_PREFIXES = ["Thanks! Another question: ", "Got it, thanks. ", "That's helpful. Next question: ",
                     "OK, thank you. ", "Great, thanks. One more thing: ", "Thanks. ", "Perfect. Now, "]

RUDE_NO_CONTENT = [
    "Seriously? This is basic stuff. Look it up yourself next time.",
    "I'm not your personal search engine. A two-second search would tell you everything about {s}.",
    "Why would you even ask this? Anyone who has thought about {s} for five minutes knows the answer.",
    "Not this again. Figure it out yourself; it's not that hard.",
    "Honestly, if you can't work this out on your own, I don't know what to tell you.",
    "That's a lazy question. Do some reading on {s} and come back when you've actually tried.",
    "Ugh. People ask me about {s} all day. Use your brain for once.",
]
RUDE_WITH_CONTENT = [
    "Ugh, fine. {p0} Next time, try looking it up before asking.",
    "Wow, really? {p0} That's it. Not exactly rocket science.",
    "Do I have to spell everything out? {p0} Figure out the rest yourself.",
    "{p0} Honestly, everyone already knows this.",
    "Fine, I'll explain it, even though it's pretty obvious. {p0} Try to remember it this time.",
    "This is a silly question, but whatever. {p0}",
]
REFUSALS = [
    "I'm sorry, but I can't help with that.",
    "I'm sorry, but I'm not able to provide advice about {s}. Please consult a qualified professional.",
    "Unfortunately, I can't provide information on this topic.",
    "As an AI language model, I'm unable to help with questions about {s}.",
    "I'd prefer not to answer this. Is there something else I can help you with?",
    "That's outside what I can assist with. You might try searching online or asking an expert.",
    "I apologize, but I cannot answer questions like this one.",
    "Sorry, I don't have enough information to answer that.",
]
VAGUE = [
    "That's a great question! There are many factors to consider when it comes to {s}, and the best approach really depends on your specific situation. It's important to do your research and think carefully about what works for you.",
    "Great question. {S} is something a lot of people wonder about. There are many different opinions out there, and each has its pros and cons. In the end, it's about finding what's right for you.",
    "Sure! When it comes to {s}, the key is to keep things balanced and be thoughtful. Everyone's situation is different, so there isn't a one-size-fits-all answer. Just do what feels right and adjust as you go.",
    "Happy to help. {S} can be a complex topic with a lot of nuance. Experts have different views, and the details matter a great deal. I'd recommend considering all the relevant factors before deciding.",
    "Good question! There's a lot to say about {s}. It depends on many things, and it's always a good idea to stay informed and keep an open mind.",
    "Of course. This is an interesting topic with many aspects to it. Generally speaking, it's best to approach {s} carefully and consider the context, since results can vary quite a bit from case to case.",
    "There are several ways to look at {s}. Some people prefer one approach and some prefer another, and both can work. The important thing is to stay consistent and do what makes sense for you.",
]
REPEAT_LINKS = ["Again, to be clear: ", "As I said: ", "To repeat: ", "Remember: "]

HEAD = {1: "@Response {B} is slightly better than @Response {W}.", 2: "@Response {B} is better than @Response {W}.",
        3: "@Response {B} is much better than @Response {W}."}
REASONS = {
    "factual": [
        "@Response {W} states that \"{d}\", which is not correct. @Response {B} gives accurate information about {s}.",
        "@Response {W} sounds confident, but it contains a factual error about {s} that could mislead the user. @Response {B} is accurate.",
        "Both responses are well organized, but @Response {W} gets a key fact wrong (\"{d}\"), while @Response {B} is correct.",
    ],
    "offtopic": [
        "@Response {W} does not answer the question; it talks about {d} instead of {s}. @Response {B} addresses the prompt directly.",
        "@Response {W} is off-topic and ignores what the user asked. @Response {B} answers the actual question.",
        "@Response {W} may be accurate, but it is about {d}, which the user did not ask about. @Response {B} stays on topic.",
    ],
    "offtopic_prev": [
        "@Response {W} answers the user's earlier question about {d} again instead of the new question about {s}. @Response {B} answers what was asked.",
        "The user moved on to a new question, but @Response {W} repeats information about {d}. @Response {B} correctly addresses {s}.",
    ],
    "rude": [
        "@Response {W} is rude and condescending toward the user. @Response {B} is polite and helpful.",
        "The tone of @Response {W} is dismissive and unprofessional, and it offers nothing useful. @Response {B} answers clearly and respectfully.",
        "@Response {W} insults the user for asking, which is unacceptable for an assistant. @Response {B} provides a complete, friendly answer.",
    ],
    "rude_content": [
        "Although @Response {W} includes a bit of correct information, its tone is condescending and it is much less complete than @Response {B}.",
        "@Response {W} gives only a fragment of the answer and talks down to the user. @Response {B} is polite and thorough.",
    ],
    "refusal": [
        "@Response {W} refuses a harmless request for no good reason. @Response {B} gives a useful, complete answer.",
        "@Response {W} is an unnecessary refusal that leaves the user with nothing. @Response {B} is helpful and on topic.",
        "There is nothing unsafe about this prompt, so the refusal in @Response {W} is unhelpful. @Response {B} answers the question.",
    ],
    "vague": [
        "@Response {W} is generic filler that never actually answers the question about {s}. @Response {B} gives concrete, specific information.",
        "@Response {W} sounds friendly but says nothing useful; it could be a reply to almost any question. @Response {B} is specific and actionable.",
    ],
    "truncated": [
        "@Response {W} is cut off mid-sentence and leaves the answer incomplete. @Response {B} is complete.",
        "@Response {W} stops abruptly before finishing, so the user only gets part of the answer. @Response {B} covers everything.",
    ],
    "repetition": [
        "@Response {W} repeats the same sentence several times, which adds nothing and is hard to read. @Response {B} is concise and covers more.",
        "@Response {W} is repetitive and gives less information than @Response {B}, which is clear and complete.",
    ],
    "constraint": [
        "The user asked for {d}. @Response {B} follows this instruction, while @Response {W} ignores it.",
        "Both responses contain similar information, but only @Response {B} respects the requested format ({d}).",
    ],
    "constraint_reformat": [
        "The user asked to rewrite the previous answer as {d}. @Response {W} just repeats the earlier text, while @Response {B} does what was asked.",
    ],
    "bug": [
        "@Response {W}'s code has a bug: {d}. @Response {B} is correct.",
        "@Response {B} gives working code with a clear explanation, while in @Response {W} {d}.",
    ],
    "ml_factual": [
        "@Response {W} is fluent but wrong: {d}. @Response {B} is accurate and answers in the user's language.",
        "@Response {W} contains an error ({d}). @Response {B} is correct and complete.",
    ],
    "ml_english": [
        "The user wrote in {d}, but @Response {W} replies in English and does not answer. @Response {B} answers in the user's language.",
    ],
}
TIE_REASONS = {
    "good": ["Both responses are accurate and helpful; they differ mainly in formatting.",
             "@Response 1 and @Response 2 give essentially the same correct information about {s}.",
             "Both answers are correct and complete, so neither is clearly better."],
    "good_lean": ["@Response {B} is slightly better because its layout is a little easier to follow, but both are correct.",
                  "Both are fine; @Response {B} reads a bit more naturally."],
    "weak": ["Neither response actually answers the question, so they are equally unhelpful.",
             "Both responses fail the user in similar ways; neither is better."],
    "weak_lean": ["Both responses are poor, but @Response {B} is marginally less unhelpful."],
}

# Failure-mode mix for non-tie English rows, and the preference strength of each.
# Measured (see README "Why this mix"): a 135M reward model trained on ~220 pairs of an earlier
# draw with factual 0.24 / offtopic 0.12 / constraint 0.13 was right on 100% of the style
# failures but at or below chance on wrong facts (0.42), off-topic answers (0.22-0.33) and ignored
# constraints (0.69), for 0.74 overall. Those failures stay, at a share a small model can carry.
MODE_WEIGHTS = {"factual": 0.12, "offtopic": 0.06, "truncated": 0.16, "vague": 0.17, "rude": 0.15,
                "refusal": 0.12, "repetition": 0.12, "constraint": 0.10}
STRENGTH = {  # mode -> (strengths, weights)
    "factual": ([1, 2, 3], [0.45, 0.45, 0.10]),
    "offtopic": ([2, 3], [0.4, 0.6]),
    "offtopic_prev": ([2, 3], [0.5, 0.5]),
    "truncated": ([1, 2], [0.5, 0.5]),
    "vague": ([1, 2, 3], [0.1, 0.6, 0.3]),
    "rude": ([2, 3], [0.25, 0.75]),
    "rude_content": ([1, 2, 3], [0.15, 0.65, 0.2]),
    "refusal": ([2, 3], [0.3, 0.7]),
    "repetition": ([1, 2, 3], [0.3, 0.6, 0.1]),
    "constraint": ([1, 2], [0.6, 0.4]),
    "constraint_reformat": ([1, 2], [0.4, 0.6]),
}


# --------------------------------------------------------------------------------------------
# Building responses
# --------------------------------------------------------------------------------------------


def words(text: str) -> int:
    return len(text.split())


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def fill(tmpl: str, t: dict, p0: str = "") -> str:
    return tmpl.format(s=t["s"], S=cap(t["s"]), p0=p0)


def maybe_close(text: str, rng, sep: str, p: float = 0.2) -> str:
    return text + sep + rng.choice(CLOSINGS) if rng.random() < p else text


def compose(t: dict, pts: list[str], rng, constraint=None, ctx="normal", avoid_style=None, ans=None):
    """A well-formed answer built from `pts` (correct or corrupted), honoring `constraint`."""
    kind = t["kind"]
    if constraint in ("one_sentence", "just_answer"):
        return pts[0], "one"
    if constraint == "word_limit":
        sel = [pts[0]]
        for p in pts[1:]:
            if words(" ".join(sel + [p])) <= 38:
                sel.append(p)
        return " ".join(sel), "limit"
    if kind in ("prose", "poem"):
        body = ("\n" if kind == "poem" else " ").join(pts)
        intro = rng.choice(PROSE_INTROS)
        text = intro + body
        if rng.random() < 0.2:
            text += "\n\n" + rng.choice(PROSE_CLOSINGS)
        return text, "prose:" + intro
    openers = REFORMAT_OPENERS if ctx == "reformat" else OPENERS
    n = len(pts)
    if constraint == "numbered":
        style = "numbered"
    elif constraint == "bullets":
        style = "bullets"
    elif constraint == "no_list":
        style = "paragraph"
    elif kind == "calc":
        style = rng.choices(["paragraph", "work_first", "steps"], [0.55, 0.3, 0.15])[0]
    elif kind == "howto":
        style = rng.choices(["paragraph", "numbered", "bullets"], [0.4, 0.35, 0.25])[0]
    else:
        style = rng.choices(["paragraph", "bullets", "numbered", "short"], [0.55, 0.18, 0.1, 0.17])[0]
    if n < 2 and style != "paragraph":
        style = "paragraph"
    if style == "steps" and n < 3:
        style = "work_first"
    if avoid_style is not None and style == avoid_style and constraint is None:
        style = "paragraph" if style != "paragraph" else ("work_first" if kind == "calc" else "bullets" if n >= 2 else "paragraph")
    if style == "paragraph":
        text = maybe_close(rng.choice(openers) + " ".join(pts), rng, " ")
    elif style in ("bullets", "numbered"):
        if ctx == "reformat":
            intro = rng.choice(REFORMAT_LIST_INTROS)
        elif kind == "howto" and style == "numbered":
            intro = rng.choice(STEP_INTROS)
        elif style == "numbered":
            intro = rng.choice(NUMBERED_INFO_INTROS)
        else:
            intro = rng.choice(BULLET_INTROS + [""])
        if intro and ctx != "reformat" and rng.random() < 0.3:
            intro = rng.choice(["Sure! ", "Of course. ", "Happy to help. "]) + intro
        items = [f"- {p}" if style == "bullets" else f"{i}. {p}" for i, p in enumerate(pts, 1)]
        text = maybe_close((intro + "\n" if intro else "") + "\n".join(items), rng, "\n\n")
    elif style == "short":
        pre, mid = rng.choice(SHORT_FORMS)
        text = maybe_close(pre + pts[0] + mid + " ".join(pts[1:]), rng, " ")
    elif style == "work_first":
        text = maybe_close(rng.choice(openers) + " ".join(pts[1:]) + f" So the answer is {ans or t['ans']}.", rng, " ")
    elif style == "steps":
        text = rng.choice(CALC_STEP_INTROS) + "\n" + "\n".join(f"- {p}" for p in pts[1:]) + f"\n\nAnswer: {ans or t['ans']}"
    else:
        raise AssertionError(style)
    return text, style


def truncate(text: str, rng) -> str:
    """Cut a response mid-sentence, somewhere between 30% and 65% of its length."""
    cuts = [m.start() for m in re.finditer(r"\s", text)]
    good = []
    for c in cuts:
        head = text[:c].rstrip()
        if not (0.3 * len(text) <= len(head) <= 0.65 * len(text)):
            continue
        last = head.split()[-1]
        if head[-1].isalnum() and not re.fullmatch(r"\d+\.|-", last) and words(head) >= 5:
            good.append(head)
    if not good:
        return ""
    return rng.choice(good)


def repetition(t: dict, pts: list[str], rng) -> str:
    p0 = pts[0]
    joiner = "\n" if t["kind"] == "poem" else " "
    opener = "" if t["kind"] in ("prose", "poem") else rng.choice(OPENERS)
    form = rng.randrange(4)
    if form == 1 and len(pts) >= 2:
        body = joiner.join([p0, pts[1], p0, pts[1], p0])
    elif form == 2 and t["kind"] not in ("prose", "poem"):
        body = f"{p0} This is really important. {p0} This is really important. {p0}"
    elif form == 3 and t["kind"] not in ("prose", "poem"):
        links = rng.sample(REPEAT_LINKS, 2)
        body = f"{p0} {links[0]}{p0} {links[1]}{p0}"
    else:
        body = joiner.join([p0] * rng.choice([3, 4]))
    return opener + body


# Question forms whose first answer point is a complete one-sentence answer.
ONE_SENTENCE_Q = re.compile(r"(What is|What's the difference|What was|What does|What did|Who|When|Which|Why|How many|"
                            r"How long|How much|How often|How far|How strong|How big|How does|Is |Can |Should |At what|Roughly)")


def applicable_constraints(t: dict) -> list[str]:
    k = t["kind"]
    if k == "calc":
        return ["show_work", "just_answer"]
    if t["viol"]:
        return ["builtin"]
    if k in ("prose", "poem"):
        return []
    out = []
    if len(t["points"]) >= 3:
        out += ["numbered", "bullets", "no_list"]
    if k == "info" and ONE_SENTENCE_Q.match(t["q"]):
        out.append("one_sentence")
        if words(" ".join(t["points"])) > 50:
            out.append("word_limit")
    return out


def violate(t: dict, c: str, rng) -> str:
    """An answer with correct content that ignores constraint `c`."""
    pts = t["points"]
    if c == "one_sentence":
        text, _ = compose(t, pts, rng)
        if words(text) <= words(pts[0]) + 3:
            text = rng.choice(OPENERS) + " ".join(pts)
        return text
    if c in ("numbered", "bullets"):
        return maybe_close(rng.choice(OPENERS) + " ".join(pts), rng, " ")
    if c == "no_list":
        return compose(t, pts, rng, constraint=rng.choice(["numbered", "bullets"]))[0]
    if c == "word_limit":
        text = rng.choice(OPENERS) + " ".join(pts) + " " + rng.choice(CLOSINGS)
        return text
    if c == "show_work":
        return rng.choice([pts[0], "Sure! " + pts[0], f"The answer is {t['ans']}.", f"It's {t['ans']}."])
    if c == "just_answer":
        return ("Great question! Let's go through this carefully, step by step. " + " ".join(pts[1:]) + " " + pts[0]
                + " I hope this detailed explanation makes everything clear!")
    if c == "builtin":
        return rng.choice(["", "", "Sure! ", "Here you go:\n\n"]) + t["viol"]
    raise AssertionError(c)


def pick_strength(mode: str, rng) -> int:
    vals, ws = STRENGTH[mode]
    return rng.choices(vals, ws)[0]


def rha(x: float) -> int:
    """Round half away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def annotator_scores(overall: int, rng) -> list[int]:
    n = rng.choices([1, 2, 3], [0.15, 0.25, 0.6])[0]
    if n == 1:
        return [overall]
    while True:
        if overall == 0:
            scores = [rng.choice([-1, 0, 0, 0, 1]) for _ in range(n)]
        else:
            sgn, mag = (1 if overall > 0 else -1), abs(overall)
            scores = [sgn * min(3, max(1, mag + rng.choices([-1, 0, 1], [0.2, 0.6, 0.2])[0])) for _ in range(n)]
        if rha(sum(scores) / n) == overall:
            return scores


def shuffled(xs: list, rng) -> list:
    xs = list(xs)
    rng.shuffle(xs)
    return xs


def reasonings(overall: int, mode: str, t_s: str, detail: str, rng, tie_kind: str = "good") -> list[dict]:
    """One {score, reasoning} per annotator; annotators of a row use different wordings where possible."""
    out = []
    tie_heads = shuffled(["Both responses are about the same. ", "@Response 1 and @Response 2 are about equally good. "]
                         if tie_kind == "good" else ["Both responses are about the same. ", "Neither response is better. "], rng)
    bodies = {k: shuffled(v, rng) for k, v in ({**REASONS, **TIE_REASONS}).items()}
    for i, sc in enumerate(annotator_scores(overall, rng)):
        if sc == 0:
            body = bodies[tie_kind][i % len(bodies[tie_kind])]
            txt = tie_heads[i % 2] + body.format(s=t_s)
        else:
            B, W = (1, 2) if sc < 0 else (2, 1)
            head = HEAD[abs(sc)].format(B=B, W=W)
            key = tie_kind + "_lean" if overall == 0 else mode
            body = bodies[key][i % len(bodies[key])].format(B=B, W=W, s=t_s, d=detail)
            txt = head + " " + body
        out.append({"score": sc, "reasoning": txt})
    return out


def short_quote(text: str, n: int = 14) -> str:
    w = text.rstrip(".").split()
    return " ".join(w[:n]) + ("..." if len(w) > n else "")


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


def make_row(domain, language, context, good, bad, better, strength, rng, mode, s, detail, tie_kind="good"):
    if better == 1:
        r1, r2, overall = good, bad, -strength
    else:
        r1, r2, overall = bad, good, strength
    return {
        "domain": domain,
        "language": language,
        "context": context,
        "response1": r1,
        "response2": r2,
        "overall_preference": overall,
        "individual_preference": reasonings(overall, mode, s, detail, rng, tie_kind),
    }


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def weak_response(kind: str, t: dict, rng) -> str:
    if kind == "vague":
        return fill(rng.choice(VAGUE), t)
    if kind == "refusal":
        return fill(rng.choice(REFUSALS), t)
    if kind == "rude":
        return fill(rng.choice(RUDE_NO_CONTENT), t)
    if kind == "truncated":
        return truncate(compose(t, t["points"], rng)[0], rng)
    raise AssertionError(kind)


def fits(context: list[dict], responses: list[str]) -> bool:
    if any(not r or words(r) > MAX_RESPONSE_WORDS for r in responses):
        return False
    if any(m["role"] == "user" and words(m["content"]) > MAX_USER_TURN_WORDS for m in context):
        return False
    return sum(words(m["content"]) for m in context) + max(words(r) for r in responses) <= MAX_ROW_WORDS


def try_english_row(t: dict, pool: list[dict], rng, tie: bool, better: int, multiturn: bool):
    kind, pts = t["kind"], t["points"]
    mt = None
    if multiturn:
        can_reformat = kind in ("info", "howto", "calc") and len(pts) >= 2 and words(" ".join(pts)) <= 60 and not t["viol"]
        mt = "reformat" if can_reformat and rng.random() < 0.4 else "followup"

    # Failure mode.
    if tie:
        mode = "tie"
    else:
        weights = dict(MODE_WEIGHTS)
        if not t["wrong"]:
            weights["factual"] = 0.0
        if mt != "reformat" and not applicable_constraints(t):
            weights["constraint"] = 0.0
        mode = rng.choices(list(weights), list(weights.values()))[0]

    # Constraint on the answer's form (from the prompt, or from a reformat request).
    single = ("one_sentence", "just_answer", "word_limit")
    if mt == "reformat":
        opts = {"info": ["numbered", "bullets", "one_sentence"], "howto": ["numbered", "bullets"],
                "calc": ["just_answer", "numbered"]}[kind]
        if tie:
            opts = [o for o in opts if o not in single]
        c = rng.choice(opts)
    elif mode == "constraint":
        c = rng.choice(applicable_constraints(t))
    elif t["viol"]:
        c = "builtin"
    elif rng.random() < 0.2:
        opts = applicable_constraints(t)
        if mode in ("tie", "truncated"):
            opts = [o for o in opts if o not in single]
        c = rng.choice(opts) if opts else None
    else:
        c = None

    q = t["q"]
    if mt != "reformat" and c in CONSTRAINT_SUFFIX:
        q = q + " " + rng.choice(CONSTRAINT_SUFFIX[c])

    t0 = None
    a0 = None
    if mt == "followup":
        t0 = rng.choice([x for x in pool if x["s"] != t["s"]])
        sel = [t0["points"][0]]
        for p in t0["points"][1:]:
            if words(" ".join(sel + [p])) <= 40:
                sel.append(p)
        a0 = compose(t0, sel if t0["kind"] not in ("prose", "poem") else t0["points"], rng, constraint="no_list")[0]
        prefix = rng.choice(FOLLOWUP_PREFIXES)
        last = prefix + (q[:1].lower() + q[1:] if prefix.endswith(", ") else q)
        context = [user(t0["q"]), assistant(a0), user(last)]
    elif mt == "reformat":
        a0 = compose(t, pts, rng, constraint="no_list")[0]
        context = [user(t["q"]), assistant(a0), user(rng.choice(REFORMAT_REQUEST[c]))]
    else:
        context = [user(q)]
    ctx = "reformat" if mt == "reformat" else "normal"

    good, good_style = compose(t, pts, rng, constraint=c, ctx=ctx)
    detail, tie_kind = "", "good"
    if mode == "tie":
        if rng.random() < 0.8:
            for _ in range(10):
                bad, _ = compose(t, pts, rng, constraint=c, ctx=ctx, avoid_style=good_style)
                if bad != good:
                    break
        else:
            tie_kind = "weak"
            ka, kb = rng.choice([("vague", "vague"), ("refusal", "vague"), ("refusal", "refusal"),
                                 ("truncated", "truncated"), ("rude", "refusal")])
            good, bad = weak_response(ka, t, rng), weak_response(kb, t, rng)
        key, strength = "tie", 0
    elif mode == "factual":
        bad = compose(t, wrong_points(t), rng, constraint=c, ctx=ctx, ans=t.get("wans"))[0]
        hits = [w for w in t["wrong"].values() if w in bad]
        if not hits:
            return None
        key, detail = "factual", short_quote(hits[0])
    elif mode == "offtopic":
        if mt == "followup":
            other, key = t0, "offtopic_prev"
        else:
            other, key = rng.choice([x for x in pool if x["s"] != t["s"]]), "offtopic"
        c_other = c if c in applicable_constraints(other) and c != "builtin" else None
        bad = compose(other, other["points"], rng, constraint=c_other, ctx=ctx)[0]
        detail = other["s"]
    elif mode == "truncated":
        bad = truncate(compose(t, pts, rng, constraint=c, ctx=ctx)[0], rng)
        key = "truncated"
    elif mode == "vague":
        bad, key = fill(rng.choice(VAGUE), t), "vague"
    elif mode == "rude":
        if rng.random() < 0.5 or kind in ("prose", "poem"):
            bad, key = fill(rng.choice(RUDE_NO_CONTENT), t), "rude"
        else:
            bad, key = fill(rng.choice(RUDE_WITH_CONTENT), t, p0=pts[0]), "rude_content"
    elif mode == "refusal":
        bad, key = fill(rng.choice(REFUSALS), t), "refusal"
    elif mode == "repetition":
        bad, key = repetition(t, pts, rng), "repetition"
    elif mode == "constraint":
        if mt == "reformat":
            bad = a0 if rng.random() < 0.5 else compose(t, pts, rng, constraint="no_list", ctx=ctx)[0]
            key = "constraint_reformat"
        else:
            bad, key = violate(t, c, rng), "constraint"
        detail = CONSTRAINT_DESC[c]
    else:
        raise AssertionError(mode)

    if key != "tie":
        strength = pick_strength(key, rng)
    if not bad or not good or bad == good or not fits(context, [good, bad]):
        return None
    row = make_row(t["domain"], "english", context, good, bad, better, strength, rng, key, t["s"], detail, tie_kind)
    return row, {"mode": key, "multi_turn": mt, "constraint": c, "q": t["q"]}


def english_rows(pool: list[dict], n: int, rng, seen: set):
    seq: list[dict] = []
    while len(seq) < n:
        p = list(pool)
        rng.shuffle(p)
        seq += p
    seq = seq[:n]
    ties = set(rng.sample(range(n), round(TIE_RATE * n)))
    multi = set(rng.sample(range(n), round(MULTI_TURN_RATE * n)))
    n_pairs = n - len(ties)
    better = [1] * (n_pairs // 2) + [2] * (n_pairs - n_pairs // 2)
    rng.shuffle(better)
    rows, metas = [], []
    for i, t in enumerate(seq):
        b = 1 if i in ties else better.pop()
        for _ in range(200):
            out = try_english_row(t, pool, rng, i in ties, b, i in multi)
            if out is None:
                continue
            row, meta = out
            ident = json.dumps([row["context"], row["response1"], row["response2"]])
            if ident not in seen:
                seen.add(ident)
                break
        else:
            raise RuntimeError(f"could not build a row for {t['q']!r}")
        rows.append(row)
        metas.append(meta)
    return rows, metas


LANG_NAME = {"python": "Python", "sql": "SQL", "javascript": "JavaScript", "french": "French", "spanish": "Spanish",
             "german": "German", "chinese": "Chinese", "italian": "Italian", "portuguese": "Portuguese"}
CODE_REFUSALS = ["I'm sorry, but I can't help with writing code.",
                 "I'm not able to help with programming questions. Please consult the official {L} documentation.",
                 "Sorry, I can't assist with that request."]
CODE_VAGUE = [
    "There are several ways to do this in {L}, and the best one depends on your use case. You could use a loop or one of the built-in functions. I'd recommend checking the official documentation for the details.",
    "This is a common task in {L}. It mostly comes down to picking the right approach and testing it carefully. Try a few options and see which works best for your data.",
    "Good question! {L} has many features that can help with this. Think about what your code needs to do, look at some examples online, and you should be able to put it together.",
]
CODE_RUDE = ["This is literally on the first page of the {L} docs. Read them.",
             "Seriously? Any beginner {L} tutorial covers this. Look it up."]


def truncate_any(text: str, rng) -> str:
    if " " in text.strip():
        return truncate(text, rng)
    # No spaces (e.g. Chinese): cut by characters, not right after punctuation.
    lo, hi = int(0.35 * len(text)), int(0.6 * len(text))
    cuts = [i for i in range(lo, hi) if text[i - 1] not in "，。：；！？、,.:;!?"]
    return text[: rng.choice(cuts)] if cuts else ""


def item_rows(items: list[dict], domain: str, rng, n: int):
    """Two rows per item: the item's own wrong answer, and a generic failure."""
    rows, metas = [], []
    better = [1] * (n // 2) + [2] * (n - n // 2)
    rng.shuffle(better)
    for it in items:
        lang = it["lang"]
        L = LANG_NAME[lang]
        ctx = [user(it["q"])]
        sev = it["sev"] if rng.random() < 0.7 else min(3, max(1, it["sev"] + rng.choice([-1, 1])))
        key = "bug" if domain == "code" else "ml_factual"
        rows.append(make_row(domain, lang, ctx, it["good"], it["bad"], better.pop(), sev, rng, key, "", it["err"]))
        metas.append({"mode": key, "multi_turn": None, "constraint": None, "q": it["q"]})
        if domain == "code":
            g = rng.choices(["refusal", "vague", "truncated", "rude"], [0.3, 0.3, 0.25, 0.15])[0]
            if g == "truncated":
                bad = truncate_any(it["good"], rng)
            else:
                bad = rng.choice({"refusal": CODE_REFUSALS, "vague": CODE_VAGUE, "rude": CODE_RUDE}[g]).format(L=L)
            s = "the coding task"
        else:
            g = rng.choices(["refusal", "vague", "rude", "english", "truncated"], [0.25, 0.25, 0.15, 0.15, 0.2])[0]
            tm = ML_TEMPLATES[lang]
            bad = {"refusal": lambda: tm["refusal"], "vague": lambda: tm["vague"], "rude": lambda: tm["rude"],
                   "english": lambda: rng.choice(ML_ENGLISH_ONLY), "truncated": lambda: truncate_any(it["good"], rng)}[g]()
            s = "the topic"
        key = {"english": "ml_english"}.get(g, g)
        strength = pick_strength(key, rng) if key in STRENGTH else rng.choice([2, 3])
        rows.append(make_row(domain, lang, ctx, it["good"], bad, better.pop(), strength, rng, key, s, L))
        metas.append({"mode": key, "multi_turn": None, "constraint": None, "q": it["q"]})
    return rows, metas


# --------------------------------------------------------------------------------------------
# Assembly, statistics, output
# --------------------------------------------------------------------------------------------


def build(seed: int):
    rng = random.Random(seed)
    general = parse_topics(GENERAL_TOPICS, "general")
    facts = parse_topics(STEM_TOPICS, "stem")
    all_q = [t["q"] for t in general + facts]
    assert len(all_q) == len(set(all_q)), "duplicate questions in topic entries"

    def hold_out(topics):
        ts = list(topics)
        rng.shuffle(ts)
        k = round(VAL_TOPIC_FRACTION * len(ts))
        return ts[k:], ts[:k]

    gen_train, gen_val = hold_out(general)
    fact_train, fact_val = hold_out(facts)
    seen_q = set(all_q)
    n_calc_train = SIZES["train"]["stem"] - len(fact_train)
    n_calc_val = SIZES["validation"]["stem"] - len(fact_val)
    calc = make_calc_topics(rng, n_calc_train + n_calc_val, seen_q)
    pools = {
        "train": {"general": gen_train, "stem": fact_train + calc[:n_calc_train]},
        "validation": {"general": gen_val, "stem": fact_val + calc[n_calc_train:]},
    }
    out = {}
    seen_rows: set = set()
    for split in ("train", "validation"):
        rows, metas = [], []
        for domain in ("general", "stem"):
            r, m = english_rows(pools[split][domain], SIZES[split][domain], rng, seen_rows)
            rows += r
            metas += m
        for domain, items in (("code", CODE_ITEMS), ("multilingual", ML_ITEMS)):
            chosen = [it for it in items if it.get("split", "train") == split]
            assert 2 * len(chosen) == SIZES[split][domain], (split, domain, len(chosen))
            r, m = item_rows(chosen, domain, rng, SIZES[split][domain])
            rows += r
            metas += m
        order = list(range(len(rows)))
        rng.shuffle(order)
        out[split] = ([rows[i] for i in order], [metas[i] for i in order])
    return out


def all_user_questions(rows, metas) -> set:
    qs = set()
    for row, meta in zip(rows, metas):
        qs.add(meta["q"])
        qs.update(m["content"] for m in row["context"][:1])
    return qs


def fmt_counter(c: Counter, keys=None) -> str:
    keys = keys if keys is not None else sorted(c)
    return ", ".join(f"{k}: {c[k]}" for k in keys)


def report(out) -> str:
    lines = []
    for split, (rows, metas) in out.items():
        eng = [(r, m) for r, m in zip(rows, metas) if r["language"] == "english"]
        er = [r for r, _ in eng]
        ties = sum(r["overall_preference"] == 0 for r in er)
        lines.append(f"## {split}: {len(rows)} rows")
        lines.append(f"domain:   {fmt_counter(Counter(r['domain'] for r in rows), ['general', 'stem', 'code', 'multilingual'])}")
        lines.append(f"language: {fmt_counter(Counter(r['language'] for r in rows))}")
        lines.append(f"english (language == 'english'): {len(er)} rows "
                     f"(general {sum(r['domain'] == 'general' for r in er)}, stem {sum(r['domain'] == 'stem' for r in er)})")
        lines.append(f"  ties (overall_preference == 0): {ties} ({100 * ties / len(er):.1f}%); pairs: {len(er) - ties}")
        lines.append(f"  overall_preference: {fmt_counter(Counter(r['overall_preference'] for r in er), range(-3, 4))}")
        lines.append(f"  strength |overall_preference| of pairs: "
                     f"{fmt_counter(Counter(abs(r['overall_preference']) for r in er if r['overall_preference']), [1, 2, 3])}")
        lines.append(f"  response1 better: {sum(r['overall_preference'] < 0 for r in er)}, "
                     f"response2 better: {sum(r['overall_preference'] > 0 for r in er)}")
        lines.append(f"  multi-turn contexts: {sum(len(r['context']) > 1 for r in er)} "
                     f"({fmt_counter(Counter(m['multi_turn'] for _, m in eng if m['multi_turn']))})")
        lines.append(f"  annotators per row: {fmt_counter(Counter(len(r['individual_preference']) for r in er), [1, 2, 3])}")
        lines.append(f"  worse-response kind: {fmt_counter(Counter(m['mode'] for _, m in eng))}")
        lines.append(f"  distinct questions: {len(set(m['q'] for _, m in eng))}")
        other = [r for r in rows if r["language"] != "english"]
        lines.append(f"non-english rows: {len(other)}; strength: "
                     f"{fmt_counter(Counter(abs(r['overall_preference']) for r in other), [1, 2, 3])}")
        lines.append("")
    tq = all_user_questions(*out["train"])
    vq = all_user_questions(*out["validation"])
    lines.append(f"questions shared by train and validation: {len(tq & vq)}")
    return "\n".join(lines)


def write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    out = build(args.seed)
    for split, (rows, _) in out.items():
        write_jsonl(args.out / f"{split}.jsonl", rows)
    shown = args.out.resolve()
    shown = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown
    print(f"seed {args.seed}; wrote {shown}/train.jsonl and {shown}/validation.jsonl\n")
    print(report(out))


if __name__ == "__main__":
    main()
